import { describe, expect, it } from 'vitest';
import { StreamingPlayback } from '../../src/lib/playback';
import { FakeAudioContext } from './fakeWebAudio';

const RATE = 24000;

/** One continuous 220 Hz tone cut into chunks, like the fake engine's stream. */
function toneChunks(sizes: number[], amplitude = 0.3): Float32Array[] {
  let offset = 0;
  return sizes.map((n) => {
    const chunk = Float32Array.from(
      { length: n },
      (_, i) => amplitude * Math.sin((2 * Math.PI * 220 * (offset + i)) / RATE),
    );
    offset += n;
    return chunk;
  });
}

/** The largest jump between neighbouring samples: a click shows up as a big one. */
function maxStep(signal: Float32Array, from = 0, to = signal.length): number {
  let max = 0;
  for (let i = Math.max(from, 1); i < to; i++) {
    max = Math.max(max, Math.abs((signal[i] ?? 0) - (signal[i - 1] ?? 0)));
  }
  return max;
}

const TONE_STEP = 0.3 * ((2 * Math.PI * 220) / RATE); // ~0.017: the steepest a 0.3 sine gets

describe('StreamingPlayback with a Web Audio test double', () => {
  it('schedules chunks back to back on the audio clock: no gaps, no overlaps', () => {
    const ctx = new FakeAudioContext(RATE);
    const playback = new StreamingPlayback(ctx, { leadSeconds: 0.05 });
    const sizes = [4800, 4800, 2400, 9600, 4800];
    toneChunks(sizes).forEach((chunk, i) => {
      ctx.currentTime = i * 0.05; // generation faster than real time
      playback.enqueue(chunk, RATE);
    });
    const starts = ctx.sources.map((s) => s.startedAt ?? NaN);
    const durations = ctx.sources.map((s) => s.buffer?.duration ?? NaN);
    for (let i = 1; i < starts.length; i++) {
      expect(starts[i]).toBeCloseTo((starts[i - 1] ?? 0) + (durations[i - 1] ?? 0), 12);
    }
    expect(playback.scheduler.underruns).toBe(0);
    // Every source goes through its own gain into one master gain into the destination.
    const master = ctx.gains[0];
    expect(master?.connections).toEqual([ctx.destination]);
    for (const source of ctx.sources) expect(source.gain?.connections).toEqual([master]);
  });

  it('renders one continuous tone with no click at the joins', () => {
    const ctx = new FakeAudioContext(RATE);
    const playback = new StreamingPlayback(ctx, { leadSeconds: 0.05 });
    const sizes = [4800, 1234, 4800, 777, 4800];
    toneChunks(sizes).forEach((chunk, i) => {
      ctx.currentTime = i * 0.02;
      playback.enqueue(chunk, RATE);
    });
    const first = ctx.sources[0]?.startedAt ?? 0;
    const out = ctx.render(first + 1);
    const start = Math.round(first * RATE);
    const total = sizes.reduce((a, b) => a + b, 0);
    // Past the fade-in, the rendered output equals the tone sample for sample.
    const reference = toneChunks([total])[0] ?? new Float32Array();
    for (let i = 200; i < total - 200; i++) {
      expect(out[start + i]).toBeCloseTo(reference[i] ?? NaN, 6);
    }
    expect(maxStep(out)).toBeLessThanOrEqual(TONE_STEP * 1.01);
  });

  it('cancels the tentative fade-out of a chunk when the next one is appended', () => {
    const ctx = new FakeAudioContext(RATE);
    const playback = new StreamingPlayback(ctx, { leadSeconds: 0.05, fadeSeconds: 0.004 });
    const [a, b] = toneChunks([4800, 4800]);
    if (!a || !b) throw new Error('chunks');
    playback.enqueue(a, RATE);
    const firstGain = ctx.sources[0]?.gain?.gain;
    const end = (ctx.sources[0]?.startedAt ?? 0) + 0.2;
    expect(firstGain?.valueAt(end - 0.001)).toBeLessThan(0.5); // fading out: nothing follows yet
    playback.enqueue(b, RATE);
    expect(firstGain?.valueAt(end - 0.001)).toBe(1); // a continuation follows: no fade
    expect(ctx.sources[1]?.gain?.gain.valueAt(end)).toBe(1); // and it does not fade in
  });

  it('fades out into an underrun and back in after it, without clicks', () => {
    const ctx = new FakeAudioContext(RATE);
    const playback = new StreamingPlayback(ctx, { leadSeconds: 0.05 });
    const chunks = toneChunks([2400, 2400, 2400]);
    const arrivals = [0, 0.5, 0.55]; // the second chunk comes long after the first ran out
    chunks.forEach((chunk, i) => {
      ctx.currentTime = arrivals[i] ?? 0;
      playback.enqueue(chunk, RATE);
    });
    const [p1, p2, p3] = playback.scheduler.placements;
    expect(p2?.underrun).toBe(true);
    expect(p3?.underrun).toBe(false);
    expect(p2?.start).toBeGreaterThanOrEqual(0.55);
    expect(p3?.startFrame).toBe((p2?.startFrame ?? 0) + 2400);
    const out = ctx.render(1);
    expect(maxStep(out)).toBeLessThanOrEqual(TONE_STEP * 1.01);
    // Silence in the hole.
    const holeFrom = Math.round((p1?.end ?? 0) * RATE) + 1;
    const holeTo = Math.round((p2?.start ?? 0) * RATE) - 1;
    expect(maxStep(out, holeFrom, holeTo)).toBe(0);
    expect(Math.max(...out.subarray(holeFrom, holeTo).map(Math.abs))).toBe(0);
    ctx.currentTime = (p1?.end ?? 0) + 0.01;
    expect(playback.state(true)).toBe('playing'); // the late chunks are already scheduled
  });

  it('stops every source with a short fade and ignores chunks after stop', () => {
    const ctx = new FakeAudioContext(RATE);
    const playback = new StreamingPlayback(ctx);
    for (const chunk of toneChunks([4800, 4800])) playback.enqueue(chunk, RATE);
    ctx.currentTime = 0.1;
    playback.stop();
    for (const source of ctx.sources) expect(source.stoppedAt).toBeGreaterThan(0.1);
    expect(ctx.gains[0]?.gain.valueAt(0.2)).toBe(0);
    expect(playback.enqueue(new Float32Array(10), RATE)).toBeNull();
    expect(ctx.sources).toHaveLength(2);
    expect(playback.state(true)).toBe('ended');
  });

  it('skips empty chunks', () => {
    const ctx = new FakeAudioContext(RATE);
    const playback = new StreamingPlayback(ctx);
    expect(playback.enqueue(new Float32Array(0), RATE)).toBeNull();
    expect(ctx.sources).toHaveLength(0);
  });

  it('resamples consistently when the context runs at another rate', () => {
    const ctx = new FakeAudioContext(48000);
    const playback = new StreamingPlayback(ctx, { leadSeconds: 0.05 });
    const chunks = toneChunks([2400, 2400, 2400]);
    chunks.forEach((chunk, i) => {
      ctx.currentTime = i * 0.01;
      playback.enqueue(chunk, RATE);
    });
    const frames = playback.scheduler.placements.map((p) => p.frames);
    expect(frames.reduce((a, b) => a + b, 0)).toBeGreaterThanOrEqual(2 * 7200 - 2);
    const starts = ctx.sources.map((s) => s.startedAt ?? 0);
    expect(starts[1]).toBeCloseTo((starts[0] ?? 0) + (frames[0] ?? 0) / 48000, 12);
    const out = ctx.render(0.5);
    expect(maxStep(out)).toBeLessThanOrEqual((TONE_STEP / 2) * 1.05); // half the step at twice the rate
  });

  it('lets go of nodes that finished long ago', () => {
    const ctx = new FakeAudioContext(RATE);
    const playback = new StreamingPlayback(ctx, { leadSeconds: 0.05 });
    for (let i = 0; i < 10; i++) {
      ctx.currentTime = i * 0.5;
      playback.enqueue(new Float32Array(2400).fill(0.1), RATE);
    }
    const released = ctx.sources.filter((s) => s.disconnected).length;
    expect(released).toBeGreaterThan(5);
    expect(ctx.sources.at(-1)?.disconnected).toBe(false);
  });
});
