import { describe, expect, it } from 'vitest';
import { PlaybackScheduler, type Placement } from '../../src/lib/scheduler';

const RATE = 24000;
const LEAD = 0.05;

function rng(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state * 1664525 + 1013904223) >>> 0;
    return state / 2 ** 32;
  };
}

/** Every chunk starts at or after the previous one's end, and exactly at it unless re-anchored. */
function expectNoGapsNoOverlaps(placements: readonly Placement[]): void {
  for (let i = 1; i < placements.length; i++) {
    const prev = placements[i - 1];
    const cur = placements[i];
    if (!prev || !cur) throw new Error('missing placement');
    expect(cur.startFrame, `chunk ${i} overlaps`).toBeGreaterThanOrEqual(
      prev.startFrame + prev.frames,
    );
    if (!cur.underrun)
      expect(cur.startFrame, `gap before chunk ${i}`).toBe(prev.startFrame + prev.frames);
  }
}

describe('PlaybackScheduler', () => {
  it('starts the first chunk a lead after now, on a whole sample frame', () => {
    const s = new PlaybackScheduler({ sampleRate: RATE, leadSeconds: LEAD });
    const p = s.place(4800, 1.23456789);
    expect(p.first).toBe(true);
    expect(p.underrun).toBe(false);
    expect(Number.isInteger(p.startFrame)).toBe(true);
    expect(p.start).toBeGreaterThanOrEqual(1.23456789 + LEAD);
    expect(p.start).toBeLessThan(1.23456789 + LEAD + 2 / RATE);
    expect(p.duration).toBe(0.2);
    expect(p.end).toBeCloseTo(p.start + 0.2, 12);
  });

  it('appends chunks that arrive in time exactly at the end of the previous one', () => {
    const s = new PlaybackScheduler({ sampleRate: RATE, leadSeconds: LEAD });
    const a = s.place(4800, 0);
    const b = s.place(7200, 0.05); // arrives while `a` plays, well before its end
    const c = s.place(2400, 0.2);
    expect(b.startFrame).toBe(a.startFrame + 4800);
    expect(c.startFrame).toBe(b.startFrame + 7200);
    expect(b.start).toBe(a.end);
    expect(c.start).toBe(b.end);
    expect([b.underrun, c.underrun]).toEqual([false, false]);
    expect(s.underruns).toBe(0);
    expect(s.endTime).toBe((a.startFrame + 14400) / RATE);
  });

  it('re-anchors after an underrun instead of scheduling in the past', () => {
    const s = new PlaybackScheduler({ sampleRate: RATE, leadSeconds: LEAD });
    const a = s.place(2400, 0); // plays 0.05 .. 0.15
    const late = s.place(2400, 0.5);
    expect(late.underrun).toBe(true);
    expect(late.start).toBeGreaterThanOrEqual(0.5 + LEAD);
    expect(late.startFrame).toBeGreaterThan(a.startFrame + a.frames);
    expect(s.underruns).toBe(1);
  });

  it('treats a chunk arriving less than the lead before the end as an underrun', () => {
    const s = new PlaybackScheduler({ sampleRate: RATE, leadSeconds: LEAD });
    const a = s.place(4800, 0); // ends at 0.25
    const tight = s.place(4800, a.end - LEAD / 2);
    expect(tight.underrun).toBe(true);
    const s2 = new PlaybackScheduler({ sampleRate: RATE, leadSeconds: LEAD });
    const b = s2.place(4800, 0);
    expect(s2.place(4800, b.end - LEAD - 0.001).underrun).toBe(false);
  });

  it('never overlaps or leaves unexplained gaps, for random chunk sizes and arrival times', () => {
    const random = rng(7);
    for (let trial = 0; trial < 300; trial++) {
      const s = new PlaybackScheduler({ sampleRate: RATE, leadSeconds: LEAD });
      let now = random() * 10;
      for (let i = 0; i < 40; i++) {
        s.place(1 + Math.floor(random() * 24000), now);
        now += random() * 0.8; // sometimes faster than real time, sometimes slower
      }
      expectNoGapsNoOverlaps(s.placements);
      for (const p of s.placements) {
        expect(Number.isInteger(p.startFrame)).toBe(true);
      }
    }
  });

  it('places every chunk at or after now + lead (never in the past)', () => {
    const random = rng(99);
    const s = new PlaybackScheduler({ sampleRate: RATE, leadSeconds: LEAD });
    let now = 0;
    for (let i = 0; i < 500; i++) {
      const p = s.place(100 + Math.floor(random() * 5000), now);
      expect(p.start).toBeGreaterThanOrEqual(now + LEAD - 1e-9);
      now += random() * 0.3;
    }
  });

  it('counts played seconds on the audio clock, across a hole', () => {
    const s = new PlaybackScheduler({ sampleRate: RATE, leadSeconds: 0 });
    s.place(24000, 0); // 0 .. 1
    s.place(12000, 2); // 2 .. 2.5 (underrun)
    expect(s.playedSeconds(0.5)).toBeCloseTo(0.5, 9);
    expect(s.playedSeconds(1.5)).toBeCloseTo(1, 9);
    expect(s.playedSeconds(2.25)).toBeCloseTo(1.25, 9);
    expect(s.playedSeconds(9)).toBeCloseTo(1.5, 9);
    expect(s.scheduledSeconds).toBe(1.5);
  });

  it('reports waiting, playing, buffering and ended', () => {
    const s = new PlaybackScheduler({ sampleRate: RATE, leadSeconds: LEAD });
    expect(s.state(0, true)).toBe('waiting');
    expect(s.state(0, false)).toBe('idle');
    const a = s.place(4800, 0);
    expect(s.state(0, true)).toBe('waiting'); // scheduled, not yet audible
    expect(s.state(a.start + 0.1, true)).toBe('playing');
    expect(s.state(a.end + 0.01, true)).toBe('buffering'); // ran dry, more to come
    expect(s.state(a.end + 0.01, false)).toBe('ended');
    const b = s.place(4800, a.end + 0.1);
    expect(b.underrun).toBe(true);
    expect(s.state(b.start + 0.01, true)).toBe('playing');
  });

  it('rejects nonsense', () => {
    expect(() => new PlaybackScheduler({ sampleRate: 0 })).toThrow(RangeError);
    const s = new PlaybackScheduler({ sampleRate: RATE });
    expect(() => s.place(1.5, 0)).toThrow(RangeError);
    expect(() => s.place(-1, 0)).toThrow(RangeError);
  });
});
