/** Decoding the stream's audio: base64 text -> 16-bit little-endian PCM -> float samples. */

export const PCM_S16LE = 'pcm_s16le';

export function base64ToBytes(base64: string): Uint8Array {
  const binary = atob(base64);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

/** Little-endian 16-bit samples, whatever the host's byte order; a dangling odd byte is an error. */
export function bytesToInt16(bytes: Uint8Array): Int16Array {
  if (bytes.length % 2 !== 0) {
    throw new RangeError(`16-bit PCM needs an even number of bytes, got ${bytes.length}`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const samples = new Int16Array(bytes.length / 2);
  for (let i = 0; i < samples.length; i++) samples[i] = view.getInt16(i * 2, true);
  return samples;
}

export function int16ToFloat32(samples: Int16Array): Float32Array {
  const out = new Float32Array(samples.length);
  for (let i = 0; i < samples.length; i++) out[i] = (samples[i] ?? 0) / 32768;
  return out;
}

export function decodePcmChunk(base64: string): Int16Array {
  return bytesToInt16(base64ToBytes(base64));
}
