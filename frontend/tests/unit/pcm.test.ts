import { describe, expect, it } from 'vitest';
import { base64ToBytes, bytesToInt16, decodePcmChunk, int16ToFloat32 } from '../../src/lib/pcm';

function base64Of(samples: number[]): string {
  const buffer = Buffer.alloc(samples.length * 2);
  samples.forEach((s, i) => buffer.writeInt16LE(s, i * 2));
  return buffer.toString('base64');
}

describe('pcm', () => {
  it('decodes base64 to the exact bytes', () => {
    const bytes = Uint8Array.from({ length: 256 }, (_, i) => i);
    expect(Array.from(base64ToBytes(Buffer.from(bytes).toString('base64')))).toEqual(
      Array.from(bytes),
    );
    expect(base64ToBytes('')).toHaveLength(0);
  });

  it('reads 16-bit little-endian samples, including the extremes', () => {
    const samples = [0, 1, -1, 32767, -32768, 256, -256, 12345];
    expect(Array.from(decodePcmChunk(base64Of(samples)))).toEqual(samples);
  });

  it('reads from a byte view that does not start at offset 0', () => {
    const backing = new Uint8Array([9, 0x01, 0x02, 0xff, 0x7f]);
    expect(Array.from(bytesToInt16(backing.subarray(1)))).toEqual([0x0201, 0x7fff]);
  });

  it('refuses an odd number of bytes', () => {
    expect(() => bytesToInt16(new Uint8Array(3))).toThrow(RangeError);
  });

  it('scales to floats in [-1, 1)', () => {
    const floats = int16ToFloat32(Int16Array.from([0, 16384, -16384, 32767, -32768]));
    expect(Array.from(floats)).toEqual([0, 0.5, -0.5, 32767 / 32768, -1]);
  });

  it('decodes a sine chunk as the server encodes it', () => {
    const samples = Array.from({ length: 480 }, (_, i) =>
      Math.round(0.3 * 32767 * Math.sin((2 * Math.PI * 220 * i) / 24000)),
    );
    const floats = int16ToFloat32(decodePcmChunk(base64Of(samples)));
    expect(floats).toHaveLength(480);
    expect(Math.max(...floats)).toBeCloseTo(0.3, 2);
  });
});
