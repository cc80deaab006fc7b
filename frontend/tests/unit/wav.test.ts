import { describe, expect, it } from 'vitest';
import { WAV_HEADER_BYTES, encodeWav, wavBlob } from '../../src/lib/wav';

function ascii(view: DataView, offset: number, length: number): string {
  return String.fromCharCode(...Array.from({ length }, (_, i) => view.getUint8(offset + i)));
}

describe('encodeWav', () => {
  it('writes a canonical 44-byte PCM header', () => {
    const view = new DataView(encodeWav([Int16Array.from([1, 2, 3])], 24000));
    expect(ascii(view, 0, 4)).toBe('RIFF');
    expect(view.getUint32(4, true)).toBe(36 + 6);
    expect(ascii(view, 8, 4)).toBe('WAVE');
    expect(ascii(view, 12, 4)).toBe('fmt ');
    expect(view.getUint32(16, true)).toBe(16);
    expect(view.getUint16(20, true)).toBe(1); // PCM
    expect(view.getUint16(22, true)).toBe(1); // mono
    expect(view.getUint32(24, true)).toBe(24000);
    expect(view.getUint32(28, true)).toBe(48000); // byte rate
    expect(view.getUint16(32, true)).toBe(2); // block align
    expect(view.getUint16(34, true)).toBe(16);
    expect(ascii(view, 36, 4)).toBe('data');
    expect(view.getUint32(40, true)).toBe(6);
  });

  it('joins chunks in order, little-endian', () => {
    const chunks = [
      Int16Array.from([1, -2]),
      Int16Array.from([]),
      Int16Array.from([32767, -32768, 7]),
    ];
    const buffer = encodeWav(chunks, 24000);
    expect(buffer.byteLength).toBe(WAV_HEADER_BYTES + 10);
    const data = new DataView(buffer, WAV_HEADER_BYTES);
    expect(Array.from({ length: 5 }, (_, i) => data.getInt16(i * 2, true))).toEqual([
      1, -2, 32767, -32768, 7,
    ]);
  });

  it('encodes no audio as a valid empty file', () => {
    const view = new DataView(encodeWav([], 16000));
    expect(view.byteLength).toBe(WAV_HEADER_BYTES);
    expect(view.getUint32(40, true)).toBe(0);
    expect(view.getUint32(24, true)).toBe(16000);
  });

  it('makes an audio/wav Blob', async () => {
    const blob = wavBlob([Int16Array.from([5])], 24000);
    expect(blob.type).toBe('audio/wav');
    expect(blob.size).toBe(WAV_HEADER_BYTES + 2);
    const view = new DataView(await blob.arrayBuffer());
    expect(view.getInt16(WAV_HEADER_BYTES, true)).toBe(5);
  });
});
