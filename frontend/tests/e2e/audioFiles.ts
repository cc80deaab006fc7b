/** WAV files for upload tests, made with the app's own encoder. */
import { encodeWav } from '../../src/lib/wav';

export function toneWav(seconds: number, sampleRate = 24000, frequency = 180): Buffer {
  const samples = Int16Array.from({ length: Math.round(seconds * sampleRate) }, (_, i) =>
    Math.round(8000 * Math.sin((2 * Math.PI * frequency * i) / sampleRate)),
  );
  return Buffer.from(encodeWav([samples], sampleRate));
}
