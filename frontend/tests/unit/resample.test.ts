import { describe, expect, it } from 'vitest';
import { StreamResampler } from '../../src/lib/resample';

function sine(n: number, rate: number, offset = 0): Float32Array {
  return Float32Array.from({ length: n }, (_, i) =>
    Math.sin((2 * Math.PI * 220 * (i + offset)) / rate),
  );
}

describe('StreamResampler', () => {
  it('copies when the rates match', () => {
    const input = sine(100, 24000);
    expect(Array.from(new StreamResampler(24000, 24000).process(input))).toEqual(Array.from(input));
  });

  it.each([
    [24000, 48000],
    [24000, 44100],
    [24000, 16000],
  ])('gives the same samples chunk by chunk as whole (%i -> %i Hz)', (from, to) => {
    const whole = sine(24000, from);
    const once = new StreamResampler(from, to).process(whole);
    const chunked = new StreamResampler(from, to);
    const parts: number[] = [];
    let offset = 0;
    for (const size of [1, 7, 480, 4800, 1000, 333, 24000]) {
      const piece = whole.subarray(offset, Math.min(offset + size, whole.length));
      offset += piece.length;
      parts.push(...chunked.process(piece));
      if (offset >= whole.length) break;
    }
    expect(parts.length).toBe(once.length);
    for (let i = 0; i < once.length; i++) expect(parts[i]).toBeCloseTo(once[i] ?? NaN, 6);
    expect(Math.abs(once.length - Math.floor(((24000 - 1) * to) / from) - 1)).toBeLessThanOrEqual(
      1,
    );
  });
});
