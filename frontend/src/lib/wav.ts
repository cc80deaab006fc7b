/** Encoding received PCM as a WAV file (RIFF, 16-bit integer PCM). */

export const WAV_HEADER_BYTES = 44;

function totalLength(chunks: readonly Int16Array[]): number {
  return chunks.reduce((sum, chunk) => sum + chunk.length, 0);
}

/** One mono (or interleaved multi-channel) 16-bit WAV from chunks of samples, in order. */
export function encodeWav(
  chunks: readonly Int16Array[],
  sampleRate: number,
  channels = 1,
): ArrayBuffer {
  const dataBytes = totalLength(chunks) * 2;
  const buffer = new ArrayBuffer(WAV_HEADER_BYTES + dataBytes);
  const view = new DataView(buffer);
  const writeAscii = (offset: number, text: string): void => {
    for (let i = 0; i < text.length; i++) view.setUint8(offset + i, text.charCodeAt(i));
  };
  writeAscii(0, 'RIFF');
  view.setUint32(4, 36 + dataBytes, true);
  writeAscii(8, 'WAVE');
  writeAscii(12, 'fmt ');
  view.setUint32(16, 16, true); // fmt chunk size
  view.setUint16(20, 1, true); // PCM
  view.setUint16(22, channels, true);
  view.setUint32(24, sampleRate, true);
  view.setUint32(28, sampleRate * channels * 2, true); // byte rate
  view.setUint16(32, channels * 2, true); // block align
  view.setUint16(34, 16, true); // bits per sample
  writeAscii(36, 'data');
  view.setUint32(40, dataBytes, true);
  let offset = WAV_HEADER_BYTES;
  for (const chunk of chunks) {
    for (let i = 0; i < chunk.length; i++, offset += 2) view.setInt16(offset, chunk[i] ?? 0, true);
  }
  return buffer;
}

export function wavBlob(chunks: readonly Int16Array[], sampleRate: number): Blob {
  return new Blob([encodeWav(chunks, sampleRate)], { type: 'audio/wav' });
}
