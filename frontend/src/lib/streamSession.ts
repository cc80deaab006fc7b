/**
 * One streaming player's logic, without React: starts a /synthesize-stream request, decodes each
 * base64 PCM chunk, schedules it gaplessly on the audio clock (StreamingPlayback), keeps the
 * received audio for a WAV download, publishes a PlaybackTrace, and tracks what the player shows
 * (phase, chunks, received/played seconds, metrics, first-audio time, underruns, errors, blocked
 * sound) as an immutable StreamView reported through `onView`.
 *
 * The component wires it: it renders the view, calls `play`/`stop` from its handle, and calls
 * `tick` on a timer while `isActive(view)` so progress follows the audio clock.
 */
import {
  type AudioChunkEvent,
  type ChatterboxAPI,
  type DoneEvent,
  type StreamHandle,
  type StreamMetrics,
  type StreamOutcome,
  type SynthesisParams,
} from './api';
import { STREAM_SAMPLE_RATE, audioSupported, getAudioContext, unlockAudio } from './audioContext';
import { ChatterboxError } from './errors';
import { decodePcmChunk, int16ToFloat32 } from './pcm';
import { StreamingPlayback, type AudioContextLike } from './playback';
import { sessionActive, type PlaybackState } from './scheduler';
import { publishTrace, type PlaybackTrace } from './trace';
import { wavBlob } from './wav';

export interface StreamRequest {
  params: SynthesisParams;
  audioPrompt?: Blob;
}

export interface StreamResult {
  outcome: StreamOutcome;
  error: ChatterboxError | null;
  /** Seconds from sending the request to the first audio being scheduled, in this browser. */
  clientFirstAudio: number | null;
  /** Seconds from sending the request to the end of the stream, in this browser. */
  clientTotal: number;
  serverFirstChunk: number | null;
  audioSeconds: number;
  chunks: number;
}

export type StreamPhase = 'idle' | 'connecting' | 'streaming' | 'complete' | 'stopped' | 'error';

/** What the player shows. A new object on every change. */
export interface StreamView {
  phase: StreamPhase;
  playback: PlaybackState;
  chunks: number;
  receivedSeconds: number;
  playedSeconds: number;
  metrics: StreamMetrics | null;
  done: DoneEvent | null;
  clientFirstAudio: number | null;
  underruns: number;
  error: string | null;
  audioBlocked: boolean;
}

export const IDLE_VIEW: StreamView = {
  phase: 'idle',
  playback: 'idle',
  chunks: 0,
  receivedSeconds: 0,
  playedSeconds: 0,
  metrics: null,
  done: null,
  clientFirstAudio: null,
  underruns: 0,
  error: null,
  audioBlocked: false,
};

/** The request is open: chunks can still arrive. */
export function isStreamOpen(view: StreamView): boolean {
  return view.phase === 'connecting' || view.phase === 'streaming';
}

/** Something can still change (the stream is open, or scheduled audio is still playing). */
export function isActive(view: StreamView): boolean {
  return sessionActive(isStreamOpen(view), view.phase, view.playback);
}

/** The one-line status the player shows for a view. */
export function statusText(view: StreamView): string {
  const { phase, playback } = view;
  switch (phase) {
    case 'idle':
      return 'Ready. Type some text and press Play.';
    case 'connecting':
      return 'Connecting to the server…';
    case 'stopped':
      return 'Stopped.';
    case 'error':
      return view.chunks > 0 ? 'Stopped by an error.' : 'Could not synthesize.';
    case 'streaming':
      if (playback === 'buffering') return 'Buffering: waiting for more audio from the server…';
      if (playback === 'playing') return 'Playing while the rest is generated…';
      return 'Starting playback…';
    case 'complete':
      if (playback === 'playing' || playback === 'waiting') return 'Playing (all audio received).';
      return 'Finished.';
  }
}

/** An AudioContext as far as the session uses it. */
export interface SessionAudioContext extends AudioContextLike {
  readonly state: string;
  resume(): Promise<void>;
}

/** Where the session gets its AudioContext (the page's shared one, or a test double). */
export interface AudioProvider {
  supported(): boolean;
  /** The context, resuming it: called synchronously inside the user's gesture. */
  unlock(): SessionAudioContext;
  /** The context, as it is now. */
  current(): SessionAudioContext;
}

export const browserAudio: AudioProvider = {
  supported: audioSupported,
  unlock: unlockAudio,
  current: getAudioContext,
};

export interface StreamSessionOptions {
  api: Pick<ChatterboxAPI, 'synthesizeStream'>;
  /** Called with the new view after every change. */
  onView: (view: StreamView) => void;
  audio?: AudioProvider;
  /** Milliseconds on a monotonic clock (default `performance.now`). */
  now?: () => number;
  /** Where the trace goes (default `window.__chatterboxPlayback`). */
  publish?: (trace: PlaybackTrace) => void;
}

export class StreamSession {
  private readonly api: Pick<ChatterboxAPI, 'synthesizeStream'>;
  private readonly onView: (view: StreamView) => void;
  private readonly audio: AudioProvider;
  private readonly now: () => number;
  private readonly publish: (trace: PlaybackTrace) => void;
  private current: StreamView = IDLE_VIEW;
  private playback: StreamingPlayback | null = null;
  private handle: StreamHandle | null = null;
  private pcm: Int16Array[] = [];
  private sampleRate = STREAM_SAMPLE_RATE;
  private trace: PlaybackTrace | null = null;

  constructor(options: StreamSessionOptions) {
    this.api = options.api;
    this.onView = options.onView;
    this.audio = options.audio ?? browserAudio;
    this.now = options.now ?? (() => performance.now());
    this.publish = options.publish ?? publishTrace;
  }

  get view(): StreamView {
    return this.current;
  }

  /** The received audio, in order, and its sample rate (what the WAV download holds). */
  get received(): { chunks: readonly Int16Array[]; sampleRate: number } {
    return { chunks: this.pcm, sampleRate: this.sampleRate };
  }

  /** The received audio as a WAV file. */
  wav(): Blob {
    return wavBlob(this.pcm, this.sampleRate);
  }

  /**
   * Streams a request, stopping any earlier one. Call it synchronously from a click or key
   * handler: the AudioContext is resumed before anything is awaited. Settles (never rejects)
   * when the stream is over.
   */
  play(request: StreamRequest): Promise<StreamResult> {
    this.halt();
    if (!this.audio.supported()) {
      const error = new ChatterboxError('server', 'This browser cannot play streamed audio.');
      this.playback = null;
      this.setView({ ...IDLE_VIEW, phase: 'error', error: error.message });
      return Promise.resolve({
        outcome: 'error',
        error,
        clientFirstAudio: null,
        clientTotal: 0,
        serverFirstChunk: null,
        audioSeconds: 0,
        chunks: 0,
      });
    }
    // Must happen before any await: resuming is only allowed inside the user's gesture.
    const context = this.audio.unlock();
    const playback = new StreamingPlayback(context);
    this.playback = playback;
    this.pcm = [];
    const trace: PlaybackTrace = {
      contextSampleRate: context.sampleRate,
      contextState: context.state,
      streamSampleRate: null,
      chunks: [],
      underruns: 0,
      phase: 'connecting',
      playback: 'waiting',
      error: null,
    };
    this.trace = trace;
    this.publish(trace);
    this.setView({ ...IDLE_VIEW, phase: 'connecting', playback: 'waiting' });

    const sentAt = this.now();
    const elapsed = (): number => (this.now() - sentAt) / 1000;
    let firstAudio: number | null = null;
    let serverFirst: number | null = null;
    let chunks = 0;
    let received = 0;
    let failure: ChatterboxError | null = null;
    // Callbacks of a stream that a later `play` replaced change nothing.
    const current = (): boolean => this.playback === playback;

    const onChunk = (chunk: AudioChunkEvent): void => {
      if (!current()) return;
      let samples: Int16Array;
      try {
        samples = decodePcmChunk(chunk.audio_chunk);
      } catch {
        // Thrown into the API's reader, which ends the stream with this error.
        throw new ChatterboxError('stream', 'The server sent audio that could not be decoded.');
      }
      this.pcm.push(samples);
      this.sampleRate = chunk.sample_rate;
      const placement = playback.enqueue(int16ToFloat32(samples), chunk.sample_rate);
      firstAudio ??= elapsed();
      serverFirst ??= chunk.metrics.first_chunk_latency;
      chunks += 1;
      received += samples.length / chunk.sample_rate;
      if (placement) {
        trace.chunks.push({ ...placement, chunkId: chunk.chunk_id, samples: samples.length });
      }
      trace.streamSampleRate = chunk.sample_rate;
      trace.underruns = playback.scheduler.underruns;
      trace.phase = 'streaming';
      const v = this.current;
      this.setView({
        ...v,
        phase: v.phase === 'connecting' ? 'streaming' : v.phase,
        chunks,
        receivedSeconds: received,
        clientFirstAudio: firstAudio,
        metrics: chunk.metrics,
        underruns: playback.scheduler.underruns,
      });
    };

    const handle = this.api.synthesizeStream(request.params, request.audioPrompt, {
      onChunk,
      onComplete: (done) => {
        if (!current()) return;
        trace.phase = 'complete';
        const v = this.current;
        this.setView({ ...v, phase: 'complete', done, metrics: done.metrics ?? v.metrics });
      },
      onError: (error) => {
        if (!current()) return;
        failure = error;
        trace.phase = 'error';
        trace.error = error.message;
        this.setView({ ...this.current, phase: 'error', error: error.message });
      },
    });
    this.handle = handle;

    return handle.finished.then((outcome) => {
      if (this.handle === handle) this.handle = null;
      return {
        outcome,
        error: failure,
        clientFirstAudio: firstAudio,
        clientTotal: elapsed(),
        serverFirstChunk: serverFirst,
        audioSeconds: received,
        chunks,
      };
    });
  }

  /** Stops at once: cancels the request and silences the audio (the view says "stopped"). */
  stop(): void {
    const wasActive = this.handle !== null || this.playback?.state(false) === 'playing';
    this.halt();
    if (this.trace) this.trace.phase = 'stopped';
    const v = this.current;
    if (wasActive || isStreamOpen(v)) this.setView({ ...v, phase: 'stopped', playback: 'ended' });
  }

  /** Cancels the request and silences the audio without touching the view (for unmounting). */
  halt(): void {
    this.handle?.cancel();
    this.handle = null;
    this.playback?.stop();
  }

  /** Follows the audio clock: playback state, seconds played, and whether sound is held back. */
  tick(): void {
    const playback = this.playback;
    if (!playback) return;
    const state = playback.state(isStreamOpen(this.current));
    const played = playback.playedSeconds();
    const contextState = this.audio.current().state;
    const blocked = contextState !== 'running';
    const v = this.current;
    if (v.playback !== state || v.playedSeconds !== played || v.audioBlocked !== blocked) {
      this.setView({ ...v, playback: state, playedSeconds: played, audioBlocked: blocked });
    }
    if (this.trace) {
      this.trace.playback = state;
      this.trace.contextState = contextState;
    }
  }

  /** Asks the browser again to let the sound play (from a fresh gesture). */
  enableSound(): void {
    this.audio
      .current()
      .resume()
      .catch(() => undefined);
  }

  private setView(view: StreamView): void {
    this.current = view;
    this.onView(view);
  }
}
