/**
 * The live-text demo's logic, without React: sends a text word by word at a chosen pace over
 * the multi-stream-input WebSocket (TextStreamClient, WordPacer), plays the audio gaplessly as
 * it arrives (decodePcmChunk, StreamingPlayback), keeps the per-sentence timings (SentenceLog)
 * and the time to first audio, publishes a PlaybackTrace, and reports what the demo shows as an
 * immutable LiveTextView through `onView`.
 *
 * Times shown are seconds since the first word was sent (when the socket opened). The component
 * renders the view, calls `start`/`stop`, and calls `tick` on a timer while `isLiveActive`.
 */
import { withSocketToken } from './apiKey';
import { ChatterboxError, asChatterboxError } from './errors';
import { decodePcmChunk, int16ToFloat32 } from './pcm';
import { StreamingPlayback } from './playback';
import { sessionActive, type PlaybackState } from './scheduler';
import { browserAudio, type AudioProvider, type SessionAudioContext } from './streamSession';
import {
  SentenceLog,
  TEXT_STREAM_SAMPLE_RATE,
  TextStreamClient,
  WordPacer,
  browserClock,
  planSentences,
  splitWords,
  textStreamUrl,
  type ClientMessage,
  type Clock,
  type SentenceTiming,
  type VoiceSettings,
  type WebSocketFactory,
} from './textStream';
import { publishTrace, type PlaybackTrace } from './trace';

export type LivePhase =
  | 'idle'
  | 'connecting'
  | 'sending' // words are going out
  | 'finishing' // all text sent (flush + close_context): the rest of the speech is coming
  | 'complete' // isFinal: all audio received
  | 'stopped' // interrupted
  | 'error';

export interface LiveTextView {
  phase: LivePhase;
  playback: PlaybackState;
  wordsSent: number;
  wordsTotal: number;
  sentences: readonly SentenceTiming[];
  /** Clock time (ms) the first word was sent: the origin of the times shown. */
  origin: number | null;
  /** Seconds from the first word sent to the first audio playing. */
  firstAudio: number | null;
  audioMessages: number;
  receivedSeconds: number;
  playedSeconds: number;
  underruns: number;
  error: string | null;
  audioBlocked: boolean;
}

export const IDLE_LIVE_VIEW: LiveTextView = {
  phase: 'idle',
  playback: 'idle',
  wordsSent: 0,
  wordsTotal: 0,
  sentences: [],
  origin: null,
  firstAudio: null,
  audioMessages: 0,
  receivedSeconds: 0,
  playedSeconds: 0,
  underruns: 0,
  error: null,
  audioBlocked: false,
};

/** Audio can still arrive. */
export function isLiveOpen(view: LiveTextView): boolean {
  return view.phase === 'connecting' || view.phase === 'sending' || view.phase === 'finishing';
}

/** Something can still change (audio can arrive, or scheduled audio is still playing). */
export function isLiveActive(view: LiveTextView): boolean {
  return sessionActive(isLiveOpen(view), view.phase, view.playback);
}

/** The one-line status the demo shows. */
export function liveStatusText(view: LiveTextView): string {
  switch (view.phase) {
    case 'idle':
      return 'Ready. Type or paste some text and press Start.';
    case 'connecting':
      return 'Connecting to the server…';
    case 'sending':
      return view.playback === 'playing'
        ? 'Sending text and playing the speech as it arrives…'
        : 'Sending text…';
    case 'finishing':
      return view.playback === 'playing'
        ? 'All text sent; playing the rest of the speech as it arrives…'
        : 'All text sent; waiting for the rest of the speech…';
    case 'complete':
      return view.playback === 'playing' || view.playback === 'waiting'
        ? 'Playing (all audio received).'
        : 'Finished.';
    case 'stopped':
      return 'Stopped.';
    case 'error':
      return view.audioMessages > 0 ? 'Stopped by an error.' : 'Could not synthesize.';
  }
}

export interface LiveTextRequest {
  text: string;
  wordsPerSecond: number;
  /** `default`, an OpenAI voice name, or a saved voice's id. */
  voiceId: string;
  voiceSettings?: VoiceSettings;
  /** ISO 639-1 (`language_code`); none: the server's default, English. */
  languageCode?: string;
}

export interface LiveTextResult {
  outcome: 'complete' | 'stopped' | 'error';
  error: ChatterboxError | null;
  sentences: readonly SentenceTiming[];
  firstAudio: number | null;
}

export interface LiveTextSessionOptions {
  onView: (view: LiveTextView) => void;
  audio?: AudioProvider;
  clock?: Clock;
  socket?: WebSocketFactory;
  /** The socket URL for a voice and language (default: the page's origin). */
  url?: (voiceId: string, languageCode?: string) => string;
  /**
   * A single-use token for the socket when the service checks keys (api.socketToken), asked
   * for just before each connection; null: connect without one.
   */
  socketToken?: () => Promise<string | null>;
  contextId?: () => string;
  publish?: (trace: PlaybackTrace) => void;
  /** How long to wait for `isFinal` after an interruption before closing the socket (ms). */
  closeGraceMs?: number;
}

let contexts = 0;

function newContextId(): string {
  contexts += 1;
  return `live-${Date.now().toString(36)}-${contexts}`;
}

function pageUrl(voiceId: string, languageCode?: string): string {
  return textStreamUrl(window.location, voiceId, undefined, languageCode);
}

interface Run {
  client: TextStreamClient;
  context: SessionAudioContext;
  pacer: WordPacer;
  playback: StreamingPlayback;
  log: SentenceLog;
  trace: PlaybackTrace;
  error: ChatterboxError | null;
  settle: (result: LiveTextResult) => void;
  graceTimer: unknown;
  /** Samples received so far: where the next message's audio starts in the stream. */
  samplesReceived: number;
}

export class LiveTextSession {
  private readonly onView: (view: LiveTextView) => void;
  private readonly audio: AudioProvider;
  private readonly clock: Clock;
  private readonly socket: WebSocketFactory | undefined;
  private readonly url: (voiceId: string, languageCode?: string) => string;
  private socketToken: (() => Promise<string | null>) | undefined;
  private readonly contextId: () => string;
  private readonly publish: (trace: PlaybackTrace) => void;
  private readonly closeGraceMs: number;
  private current: LiveTextView = IDLE_LIVE_VIEW;
  private run: Run | null = null;

  constructor(options: LiveTextSessionOptions) {
    this.onView = options.onView;
    this.audio = options.audio ?? browserAudio;
    this.clock = options.clock ?? browserClock;
    this.socket = options.socket;
    this.url = options.url ?? pageUrl;
    this.socketToken = options.socketToken;
    this.contextId = options.contextId ?? newContextId;
    this.publish = options.publish ?? publishTrace;
    this.closeGraceMs = options.closeGraceMs ?? 3000;
  }

  /** Where later runs get their socket token from (see the `socketToken` option). */
  setSocketTokens(source: () => Promise<string | null>): void {
    this.socketToken = source;
  }

  get view(): LiveTextView {
    return this.current;
  }

  /** What the client sent in the current (or last) run, in order. */
  get sentMessages(): readonly ClientMessage[] {
    return this.run?.client.sent ?? [];
  }

  /**
   * Sends `request.text` word by word and plays the speech, stopping any earlier run. Call it
   * synchronously from a click or key handler (the AudioContext is resumed in the gesture).
   * Settles (never rejects) when the context is over, stopped, or failed.
   */
  start(request: LiveTextRequest): Promise<LiveTextResult> {
    this.halt();
    const words = splitWords(request.text);
    const plan = planSentences(words);
    const log = new SentenceLog(plan);
    if (!this.audio.supported()) {
      const error = new ChatterboxError('server', 'This browser cannot play streamed audio.');
      this.setView({ ...IDLE_LIVE_VIEW, phase: 'error', error: error.message });
      return Promise.resolve({ outcome: 'error', error, sentences: [], firstAudio: null });
    }
    if (words.length === 0) {
      const error = new ChatterboxError('invalid', 'Type some text to speak.');
      this.setView({ ...IDLE_LIVE_VIEW, phase: 'error', error: error.message });
      return Promise.resolve({ outcome: 'error', error, sentences: [], firstAudio: null });
    }
    // Before any await: resuming is only allowed inside the user's gesture.
    const context = this.audio.unlock();
    const playback = new StreamingPlayback(context);
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
    this.publish(trace);
    this.setView({
      ...IDLE_LIVE_VIEW,
      phase: 'connecting',
      playback: 'waiting',
      wordsTotal: words.length,
      sentences: [...log.sentences],
    });

    let settle: (result: LiveTextResult) => void = () => undefined;
    const finished = new Promise<LiveTextResult>((resolve) => {
      settle = resolve;
    });
    const isCurrent = (): boolean => this.run === run;

    const pacer = new WordPacer({
      words,
      wordsPerSecond: request.wordsPerSecond,
      clock: this.clock,
      onWord: (word, index, at) => {
        if (!isCurrent()) return;
        run.client.sendText(word);
        log.wordSent(index, at);
        const v = this.current;
        this.setView({
          ...v,
          origin: v.origin ?? at,
          wordsSent: index + 1,
          sentences: [...log.sentences],
        });
      },
      onDone: () => {
        if (!isCurrent()) return;
        run.client.finish();
        trace.phase = 'finishing';
        this.setView({ ...this.current, phase: 'finishing' });
      },
    });

    const client = new TextStreamClient({
      url: this.url(request.voiceId, request.languageCode),
      contextId: this.contextId(),
      voiceSettings: request.voiceSettings ?? {},
      ...(this.socket ? { socket: this.socket } : {}),
      onOpen: () => {
        if (!isCurrent()) return;
        trace.phase = 'sending';
        this.setView({ ...this.current, phase: 'sending' });
        run.pacer.start();
      },
      onAudio: (base64, segmentStarts) => {
        if (isCurrent()) this.onAudio(run, base64, segmentStarts);
      },
      onFinal: () => {
        if (!isCurrent() || run.error) return;
        if (this.current.phase === 'stopped') return;
        trace.phase = 'complete';
        this.setView({ ...this.current, phase: 'complete' });
      },
      onError: (error) => {
        if (isCurrent()) this.fail(run, error);
      },
      onClose: () => {
        if (!isCurrent()) return;
        this.clearGrace(run);
        run.pacer.stop();
        const phase = this.current.phase;
        run.settle({
          outcome: run.error ? 'error' : phase === 'stopped' ? 'stopped' : 'complete',
          error: run.error,
          sentences: [...log.sentences],
          firstAudio: this.current.firstAudio,
        });
      },
    });

    const run: Run = {
      client,
      context,
      pacer,
      playback,
      log,
      trace,
      error: null,
      settle,
      graceTimer: null,
      samplesReceived: 0,
    };
    this.run = run;
    if (this.socketToken) {
      const url = this.url(request.voiceId, request.languageCode);
      this.socketToken().then(
        (token) => {
          if (isCurrent()) client.connect(withSocketToken(url, token));
        },
        (error: unknown) => {
          if (isCurrent()) this.fail(run, asChatterboxError(error));
        },
      );
    } else {
      client.connect();
    }
    return finished;
  }

  /**
   * Interrupts: no more words, `close_context` at once (the server stops generating), the
   * audio silenced. The socket closes once the server confirms with `isFinal`.
   */
  stop(): void {
    const run = this.run;
    if (!run) return;
    const v = this.current;
    const wasActive = isLiveOpen(v) || run.playback.state(false) === 'playing';
    run.pacer.stop();
    run.playback.stop();
    run.trace.phase = 'stopped';
    if (!isLiveOpen(v)) {
      if (wasActive) this.setView({ ...v, phase: 'stopped', playback: 'ended' });
      return;
    }
    this.setView({ ...v, phase: 'stopped', playback: 'ended' });
    run.client.interrupt();
    if (run.client.state !== 'closed' && run.graceTimer === null) {
      run.graceTimer = this.clock.setTimeout(() => {
        run.graceTimer = null;
        run.client.close();
      }, this.closeGraceMs);
    }
  }

  /** Closes the socket and silences the audio without touching the view (for unmounting). */
  halt(): void {
    const run = this.run;
    if (!run) return;
    run.pacer.stop();
    run.playback.stop();
    this.clearGrace(run);
    if (run.client.state === 'open') run.client.interrupt();
    run.client.close();
  }

  /** Follows the audio clock: playback state, seconds played, and whether sound is held back. */
  tick(): void {
    const run = this.run;
    if (!run) return;
    const v = this.current;
    const state = run.playback.state(isLiveOpen(v));
    const played = run.playback.playedSeconds();
    const contextState = this.audio.current().state;
    const blocked = contextState !== 'running';
    if (v.playback !== state || v.playedSeconds !== played || v.audioBlocked !== blocked) {
      this.setView({ ...v, playback: state, playedSeconds: played, audioBlocked: blocked });
    }
    run.trace.playback = state;
    run.trace.contextState = contextState;
  }

  /** Asks the browser again to let the sound play (from a fresh gesture). */
  enableSound(): void {
    this.audio
      .current()
      .resume()
      .catch(() => undefined);
  }

  private onAudio(run: Run, base64: string, segmentStarts: readonly number[] = []): void {
    if (run.playback.isStopped || run.error) return;
    let samples: Int16Array;
    try {
      samples = decodePcmChunk(base64);
    } catch {
      this.fail(
        run,
        new ChatterboxError('stream', 'The server sent audio that could not be decoded.'),
      );
      return;
    }
    const at = this.clock.now();
    const placement = run.playback.enqueue(int16ToFloat32(samples), TEXT_STREAM_SAMPLE_RATE);
    const seconds = samples.length / TEXT_STREAM_SAMPLE_RATE;
    // When it starts playing, on the page's clock: the audio clock's schedule, from now.
    const playsAt = placement ? at + (placement.start - run.context.currentTime) * 1000 : at;
    // Sentence starts the server reported, as seconds into this message's audio.
    const starts = segmentStarts.map(
      (sample) => Math.max(0, sample - run.samplesReceived) / TEXT_STREAM_SAMPLE_RATE,
    );
    run.samplesReceived += samples.length;
    run.log.audioArrived(at, playsAt, seconds, starts);
    const v = this.current;
    const count = v.audioMessages + 1;
    if (placement) {
      run.trace.chunks.push({ ...placement, chunkId: count, samples: samples.length });
    }
    run.trace.streamSampleRate = TEXT_STREAM_SAMPLE_RATE;
    run.trace.underruns = run.playback.scheduler.underruns;
    const origin = v.origin ?? at;
    this.setView({
      ...v,
      origin,
      audioMessages: count,
      receivedSeconds: v.receivedSeconds + seconds,
      firstAudio: v.firstAudio ?? (playsAt - origin) / 1000,
      underruns: run.playback.scheduler.underruns,
      sentences: [...run.log.sentences],
    });
  }

  /** An error ends the run: no more words, the socket closed; what was scheduled plays out. */
  private fail(run: Run, error: ChatterboxError): void {
    if (run.error) return;
    run.error = error;
    run.pacer.stop();
    run.trace.phase = 'error';
    run.trace.error = error.message;
    this.setView({ ...this.current, phase: 'error', error: error.message });
    run.client.close();
  }

  private clearGrace(run: Run): void {
    if (run.graceTimer !== null) this.clock.clearTimeout(run.graceTimer);
    run.graceTimer = null;
  }

  private setView(view: LiveTextView): void {
    this.current = view;
    this.onView(view);
  }
}
