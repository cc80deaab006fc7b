/**
 * Gapless playback of streamed chunks with Web Audio: each chunk becomes an AudioBufferSource
 * started at the time the scheduler gives it, on the audio clock (never chained on `onended`,
 * which leaves gaps).
 *
 * Clicks at underruns: every chunk is given a short tentative fade-out at its end. When the next
 * chunk arrives in time it is appended exactly at the end and the fade-out is cancelled (the join
 * stays sample-exact); when it arrives late the fade-out plays, the hole is silent, and the late
 * chunk fades in. A chunk can only be appended if it arrives at least the scheduler's lead before
 * the end, which is longer than the fade, so a cancelled fade has never started.
 */
import { StreamResampler } from './resample';
import { PlaybackScheduler, type Placement, type PlaybackState } from './scheduler';

// The few Web Audio members used here, so tests can pass a test double.
export interface AudioParamLike {
  setValueAtTime(value: number, time: number): unknown;
  linearRampToValueAtTime(value: number, time: number): unknown;
  cancelScheduledValues(time: number): unknown;
}
export interface AudioNodeLike {
  connect(destination: AudioNodeLike): unknown;
  disconnect(): void;
}
export interface GainNodeLike extends AudioNodeLike {
  readonly gain: AudioParamLike;
}
export interface AudioBufferLike {
  copyToChannel(source: Float32Array<ArrayBuffer>, channel: number): void;
}
export interface BufferSourceLike extends AudioNodeLike {
  buffer: AudioBufferLike | null;
  start(when?: number): void;
  stop(when?: number): void;
}
export interface AudioContextLike {
  readonly currentTime: number;
  readonly sampleRate: number;
  readonly destination: unknown;
  createBuffer(channels: number, length: number, sampleRate: number): AudioBufferLike;
  createBufferSource(): BufferSourceLike;
  createGain(): GainNodeLike;
}

export const DEFAULT_FADE_SECONDS = 0.004;
/** Nodes that finished this long ago are disconnected, to bound what a long stream holds. */
const PRUNE_AFTER_SECONDS = 1;

export interface PlaybackOptions {
  leadSeconds?: number;
  fadeSeconds?: number;
}

interface Voice {
  source: BufferSourceLike;
  gain: GainNodeLike;
  placement: Placement;
  /** When this chunk's tentative fade-out starts (cancelled if the next chunk is appended). */
  fadeOutAt: number;
}

export class StreamingPlayback {
  readonly scheduler: PlaybackScheduler;
  private readonly context: AudioContextLike;
  private readonly master: GainNodeLike;
  private readonly fadeSeconds: number;
  private readonly voices: Voice[] = [];
  private resampler: StreamResampler | null = null;
  private stopped = false;

  constructor(context: AudioContextLike, options: PlaybackOptions = {}) {
    this.context = context;
    this.fadeSeconds = options.fadeSeconds ?? DEFAULT_FADE_SECONDS;
    this.scheduler = new PlaybackScheduler({
      sampleRate: context.sampleRate,
      ...(options.leadSeconds === undefined ? {} : { leadSeconds: options.leadSeconds }),
    });
    this.master = context.createGain();
    this.master.connect(context.destination as AudioNodeLike);
  }

  get isStopped(): boolean {
    return this.stopped;
  }

  /** Schedules a chunk of mono samples recorded at `sampleRate`; null if nothing was played. */
  enqueue(samples: Float32Array, sampleRate: number): Placement | null {
    if (this.stopped) return null;
    const output = this.toContextRate(samples, sampleRate);
    if (output.length === 0) return null;
    const ctx = this.context;
    const placement = this.scheduler.place(output.length, ctx.currentTime);
    const buffer = ctx.createBuffer(1, output.length, ctx.sampleRate);
    buffer.copyToChannel(output, 0);
    const source = ctx.createBufferSource();
    source.buffer = buffer;
    const gain = ctx.createGain();
    source.connect(gain);
    gain.connect(this.master);

    const fade = Math.min(this.fadeSeconds, placement.duration / 4);
    const previous = this.voices[this.voices.length - 1];
    if (placement.first || placement.underrun || !previous) {
      gain.gain.setValueAtTime(0, placement.start);
      gain.gain.linearRampToValueAtTime(1, placement.start + fade);
    } else {
      previous.gain.gain.cancelScheduledValues(previous.fadeOutAt);
    }
    const fadeOutAt = placement.end - fade;
    gain.gain.setValueAtTime(1, fadeOutAt);
    gain.gain.linearRampToValueAtTime(0, placement.end);
    source.start(placement.start);
    this.voices.push({ source, gain, placement, fadeOutAt });
    this.prune();
    return placement;
  }

  /** Stops at once with a short fade (no click); the instance cannot be reused. */
  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    const now = this.context.currentTime;
    const fade = this.fadeSeconds * 2;
    this.master.gain.cancelScheduledValues(now);
    this.master.gain.setValueAtTime(1, now);
    this.master.gain.linearRampToValueAtTime(0, now + fade);
    for (const voice of this.voices) {
      try {
        voice.source.stop(now + fade);
      } catch {
        // already stopped
      }
    }
    setTimeout(
      () => {
        this.master.disconnect();
      },
      (fade + 0.1) * 1000,
    );
  }

  state(moreComing: boolean): PlaybackState {
    if (this.stopped) return 'ended';
    return this.scheduler.state(this.context.currentTime, moreComing);
  }

  playedSeconds(): number {
    return this.scheduler.playedSeconds(this.context.currentTime);
  }

  private toContextRate(samples: Float32Array, sampleRate: number): Float32Array<ArrayBuffer> {
    if (sampleRate === this.context.sampleRate) return Float32Array.from(samples);
    if (!this.resampler || this.resampler.from !== sampleRate) {
      this.resampler = new StreamResampler(sampleRate, this.context.sampleRate);
    }
    return this.resampler.process(samples);
  }

  private prune(): void {
    const before = this.context.currentTime - PRUNE_AFTER_SECONDS;
    // Keep the newest voice: its fade-out may still need cancelling.
    while (this.voices.length > 1 && (this.voices[0]?.placement.end ?? Infinity) < before) {
      const old = this.voices.shift();
      old?.source.disconnect();
      old?.gain.disconnect();
    }
  }
}
