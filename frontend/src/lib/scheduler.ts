/**
 * Where each streamed chunk goes on the audio clock. Pure: no Web Audio, no timers.
 *
 * Time is counted in whole sample frames of the output, so consecutive chunks meet exactly
 * (`start[i + 1] = start[i] + frames[i]`) with no floating-point drift. A chunk that arrives
 * after the queue has run dry (or too close to its end to be scheduled safely) is an underrun:
 * playback re-anchors a short lead after "now", and the player fades around the hole.
 */

export interface SchedulerOptions {
  /** Output sample rate (the AudioContext's). */
  sampleRate: number;
  /** How far ahead of the audio clock a chunk must start to be scheduled safely, in seconds. */
  leadSeconds?: number;
}

export const DEFAULT_LEAD_SECONDS = 0.06;

export interface Placement {
  /** 0-based order of arrival. */
  index: number;
  startFrame: number;
  frames: number;
  /** Seconds on the audio clock. */
  start: number;
  duration: number;
  end: number;
  /** The first chunk of the stream. */
  first: boolean;
  /** Playback had run dry (or nearly) when it came: it was re-anchored, not appended. */
  underrun: boolean;
}

export type PlaybackState = 'idle' | 'waiting' | 'playing' | 'buffering' | 'ended';

/** Something can still change: the stream is open, or it has ended (completely or in an error)
 * and audio scheduled before that is still playing. */
export function sessionActive(open: boolean, phase: string, playback: PlaybackState): boolean {
  const ended = phase === 'complete' || phase === 'error';
  return open || (ended && playback !== 'ended' && playback !== 'idle');
}

export class PlaybackScheduler {
  readonly sampleRate: number;
  readonly leadFrames: number;
  private readonly placed: Placement[] = [];
  private nextFrame: number | null = null;

  constructor(options: SchedulerOptions) {
    if (!(options.sampleRate > 0)) throw new RangeError('sampleRate must be positive');
    this.sampleRate = options.sampleRate;
    this.leadFrames = Math.ceil((options.leadSeconds ?? DEFAULT_LEAD_SECONDS) * this.sampleRate);
  }

  /** Places a chunk of `frames` frames that is ready at audio-clock time `now` (seconds). */
  place(frames: number, now: number): Placement {
    if (!Number.isInteger(frames) || frames < 0) throw new RangeError(`bad frame count ${frames}`);
    const earliest = Math.ceil(now * this.sampleRate) + this.leadFrames;
    const first = this.nextFrame === null;
    const underrun = this.nextFrame !== null && this.nextFrame < earliest;
    const startFrame = this.nextFrame === null || underrun ? earliest : this.nextFrame;
    this.nextFrame = startFrame + frames;
    const placement: Placement = {
      index: this.placed.length,
      startFrame,
      frames,
      start: startFrame / this.sampleRate,
      duration: frames / this.sampleRate,
      end: this.nextFrame / this.sampleRate,
      first,
      underrun,
    };
    this.placed.push(placement);
    return placement;
  }

  get placements(): readonly Placement[] {
    return this.placed;
  }

  get underruns(): number {
    return this.placed.reduce((n, p) => n + (p.underrun ? 1 : 0), 0);
  }

  /** Seconds of audio scheduled so far. */
  get scheduledSeconds(): number {
    return this.placed.reduce((sum, p) => sum + p.frames, 0) / this.sampleRate;
  }

  /** Audio-clock time when everything scheduled so far has played (null before any chunk). */
  get endTime(): number | null {
    return this.nextFrame === null ? null : this.nextFrame / this.sampleRate;
  }

  /** Seconds of audio already played at `now`. */
  playedSeconds(now: number): number {
    const nowFrame = now * this.sampleRate;
    let frames = 0;
    for (const p of this.placed) frames += Math.min(Math.max(nowFrame - p.startFrame, 0), p.frames);
    return frames / this.sampleRate;
  }

  /**
   * What a listener experiences at `now`; `moreComing` is true while the stream can still
   * deliver chunks. Running dry while more is coming is buffering, not the end.
   */
  state(now: number, moreComing: boolean): PlaybackState {
    const end = this.endTime;
    const firstStart = this.placed[0]?.start;
    if (end === null || firstStart === undefined) return moreComing ? 'waiting' : 'idle';
    if (now < firstStart) return 'waiting';
    if (now < end) return 'playing';
    return moreComing ? 'buffering' : 'ended';
  }
}
