/**
 * Linear resampling that carries its position and last sample across chunks, so a stream
 * resampled chunk by chunk is the same as resampled whole (no seams at chunk joins). Used only
 * when the AudioContext could not be opened at the stream's own rate.
 */
export class StreamResampler {
  readonly from: number;
  readonly to: number;
  private readonly step: number;
  /** Input position of the next output sample, relative to the next chunk's first sample. */
  private position = 0;
  private previous: number | null = null;

  constructor(from: number, to: number) {
    if (!(from > 0 && to > 0)) throw new RangeError('sample rates must be positive');
    this.from = from;
    this.to = to;
    this.step = from / to;
  }

  process(input: Float32Array): Float32Array<ArrayBuffer> {
    if (this.from === this.to) return Float32Array.from(input);
    const at = (i: number): number => (i < 0 ? (this.previous ?? 0) : (input[i] ?? 0));
    const out: number[] = [];
    const lastIndex = input.length - 1;
    let pos = this.position;
    while (pos <= lastIndex) {
      const i = Math.floor(pos);
      const frac = pos - i;
      out.push(frac === 0 ? at(i) : at(i) + (at(i + 1) - at(i)) * frac);
      pos += this.step;
    }
    if (input.length > 0) {
      this.position = pos - input.length;
      this.previous = input[lastIndex] ?? 0;
    }
    return Float32Array.from(out);
  }
}
