/** Checks on what the player scheduled (its trace) and on what the page actually played. */
import type { PlaybackTrace } from '../../src/lib/trace';
import type { Recording } from './browser';

export type TraceChunk = PlaybackTrace['chunks'][number];

export interface ScheduleReport {
  /** Chunks that start later than the previous one's end without being marked as underruns. */
  gaps: string[];
  /** Chunks that start before the previous one's end. */
  overlaps: string[];
  underruns: number;
  totalFrames: number;
}

export function checkSchedule(chunks: readonly TraceChunk[]): ScheduleReport {
  const report: ScheduleReport = { gaps: [], overlaps: [], underruns: 0, totalFrames: 0 };
  chunks.forEach((chunk, i) => {
    report.totalFrames += chunk.frames;
    if (chunk.underrun) report.underruns += 1;
    const prev = chunks[i - 1];
    if (!prev) return;
    const prevEnd = prev.startFrame + prev.frames;
    if (chunk.startFrame < prevEnd)
      report.overlaps.push(
        `chunk ${chunk.chunkId} overlaps by ${prevEnd - chunk.startFrame} frames`,
      );
    if (chunk.startFrame > prevEnd && !chunk.underrun) {
      report.gaps.push(`gap of ${chunk.startFrame - prevEnd} frames before chunk ${chunk.chunkId}`);
    }
  });
  return report;
}

/** The audio-clock frame just after the last scheduled chunk. */
export function scheduledEnd(chunks: readonly TraceChunk[]): number {
  return Math.max(0, ...chunks.map((chunk) => chunk.startFrame + chunk.frames));
}

export interface ToneReport {
  /** 10 ms windows inside scheduled audio where the tone is missing (a gap in the output). */
  silentWindows: number;
  windowsChecked: number;
  /** Loudest sample in the holes between re-anchored chunks (should be silence). */
  loudestInHoles: number;
  /** Largest jump between neighbouring samples anywhere: a click is a big jump. */
  maxStep: number;
  /** Loudest sample: two chunks playing over each other would add up past the tone's peak. */
  peak: number;
  /** Frames of the scheduled audio that the recording covers. */
  coveredFrames: number;
}

/**
 * For a steady sine of known amplitude (the fake engine's 220 Hz tone, continuous across
 * chunks): every 10 ms window of scheduled audio must carry the tone, holes must be silent,
 * and nothing may jump faster than the sine itself does.
 */
export function checkTone(
  recording: Recording,
  chunks: readonly TraceChunk[],
  amplitude: number,
): ToneReport {
  const at = (frame: number): number | undefined =>
    recording.samples[frame - recording.firstFrame] ?? undefined;
  const windowFrames = Math.round(recording.sampleRate * 0.01);
  const edge = Math.round(recording.sampleRate * 0.01); // fades at the ends of runs are fine
  const report: ToneReport = {
    silentWindows: 0,
    windowsChecked: 0,
    loudestInHoles: 0,
    maxStep: 0,
    peak: 0,
    coveredFrames: 0,
  };
  // Runs of contiguous audio: a new run begins at each re-anchored chunk.
  const runs: Array<[number, number]> = [];
  for (const chunk of chunks) {
    const last = runs[runs.length - 1];
    if (last && chunk.startFrame === last[1]) last[1] += chunk.frames;
    else runs.push([chunk.startFrame, chunk.startFrame + chunk.frames]);
  }
  for (const [from, to] of runs) {
    for (let w = from + edge; w + windowFrames <= to - edge; w += windowFrames) {
      let loudest = 0;
      let seen = 0;
      for (let f = w; f < w + windowFrames; f++) {
        const s = at(f);
        if (s === undefined) continue;
        seen += 1;
        loudest = Math.max(loudest, Math.abs(s));
      }
      if (seen === 0) continue;
      report.windowsChecked += 1;
      if (loudest < amplitude * 0.8) report.silentWindows += 1;
    }
    for (let f = from; f < to; f++) if (at(f) !== undefined) report.coveredFrames += 1;
  }
  for (let i = 1; i < runs.length; i++) {
    const holeFrom = (runs[i - 1]?.[1] ?? 0) + 1;
    const holeTo = (runs[i]?.[0] ?? 0) - 1;
    for (let f = holeFrom; f < holeTo; f++) {
      report.loudestInHoles = Math.max(report.loudestInHoles, Math.abs(at(f) ?? 0));
    }
  }
  for (let i = 1; i < recording.samples.length; i++) {
    const a = recording.samples[i - 1];
    const b = recording.samples[i];
    if (typeof b === 'number') report.peak = Math.max(report.peak, Math.abs(b));
    if (typeof a === 'number' && typeof b === 'number') {
      report.maxStep = Math.max(report.maxStep, Math.abs(b - a));
    }
  }
  return report;
}

/** The steepest step a sine of this amplitude and frequency takes between two samples. */
export function sineStep(amplitude: number, frequency: number, sampleRate: number): number {
  return amplitude * 2 * Math.sin((Math.PI * frequency) / sampleRate);
}
