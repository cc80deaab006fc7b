/**
 * Text in, audio out over ElevenLabs' multi-context WebSocket
 * (`/v1/text-to-speech/{voice_id}/multi-stream-input`), as a voice agent uses it: open a
 * context, send the text a word at a time while a language model would still be writing it,
 * then flush and close the context; the audio comes back as base64 PCM messages, then
 * `isFinal`. Plain TypeScript, no React:
 *
 * - `splitWords`, `planSentences`: the text as the words that are sent (each with its trailing
 *   space; Chinese and Japanese, written without spaces, a character at a time) and the
 *   sentences they make, split where the server's text feed splits them.
 * - `TextStreamClient`: one context over one socket (the messages and their order, the server's
 *   replies parsed, errors and unexpected closes reported).
 * - `WordPacer`: sends words at a steady pace on an injectable clock, without drift.
 * - `SentenceLog`: when each sentence's last word was sent and when its first audio arrived and
 *   started playing.
 */
import { ChatterboxError, networkError } from './errors';

/** The audio the demo asks for: 16-bit little-endian mono PCM at the model's rate. */
export const TEXT_STREAM_OUTPUT_FORMAT = 'pcm_24000';
export const TEXT_STREAM_SAMPLE_RATE = 24000;

// --- the text ----------------------------------------------------------------------------

// Ideographs and kana: Chinese and Japanese, written without spaces between words.
const CJK = '\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff';
// One ideograph or kana with the punctuation after it, or a run of anything else.
const PIECE = new RegExp(`[${CJK}][^${CJK}\\p{L}\\p{N}]*|[^${CJK}]+`, 'gu');

/**
 * The text as it is sent, as a language model would write it: one piece per word, the last
 * piece of each ending with a space; runs of Chinese or Japanese a character at a time.
 */
export function splitWords(text: string): string[] {
  return text
    .split(/\s+/)
    .filter((word) => word.length > 0)
    .flatMap((word) => {
      const pieces = word.match(PIECE) ?? [word];
      return pieces.map((piece, i) => (i === pieces.length - 1 ? `${piece} ` : piece));
    });
}

// Where the server ends a sentence (SENTENCE_END in server/engine/text.py): a stop, possibly
// closed by quotes or brackets, then white space (which a word's last piece ends with); a
// Chinese or Japanese full stop needs none; a half-width one does before an ideograph.
const CLOSERS = '"\'”’)\\]»›」』）】》〉〕］｝';
const SPACED_STOPS = '.!?;…‼⁇⁈⁉\u037e؟؛۔।॥';
const WIDE_END = new RegExp(`[。！？｡；．][${CLOSERS}]*\\s*$`, 'u');
const SPACED_END = new RegExp(`[${SPACED_STOPS}][${CLOSERS}]*(\\s*)$`, 'u');
const CJK_START = new RegExp(`^[${CJK}]`, 'u');

/** Whether the server ends a sentence after `word` (`next`: the word after it, if any). */
export function endsSentence(word: string, next?: string): boolean {
  if (WIDE_END.test(word)) return true;
  const spaced = SPACED_END.exec(word);
  if (!spaced) return false;
  return spaced[1] !== '' || (next !== undefined && CJK_START.test(next));
}

export interface SentencePlan {
  /** The sentence's words joined, without the trailing space. */
  text: string;
  /** Indexes (into the word list) of its first and last word. */
  firstWord: number;
  lastWord: number;
}

/** The sentences the words make; the last word always ends one (the flush at the end). */
export function planSentences(words: readonly string[]): SentencePlan[] {
  const sentences: SentencePlan[] = [];
  let first = 0;
  words.forEach((word, i) => {
    if (endsSentence(word, words[i + 1]) || i === words.length - 1) {
      sentences.push({
        text: words
          .slice(first, i + 1)
          .join('')
          .trim(),
        firstWord: first,
        lastWord: i,
      });
      first = i + 1;
    }
  });
  return sentences;
}

// --- the protocol ------------------------------------------------------------------------

/**
 * The socket's URL on the page's origin (ws: for http:, wss: for https:), with the language
 * (ISO 639-1) as ElevenLabs names it, when one is given.
 */
export function textStreamUrl(
  location: { protocol: string; host: string },
  voiceId: string,
  outputFormat = TEXT_STREAM_OUTPUT_FORMAT,
  languageCode?: string,
): string {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const voice = encodeURIComponent(voiceId || 'default');
  const query = new URLSearchParams({ output_format: outputFormat });
  if (languageCode) query.set('language_code', languageCode);
  return `${scheme}//${location.host}/v1/text-to-speech/${voice}/multi-stream-input?${query.toString()}`;
}

/** ElevenLabs' voice settings, plus Chatterbox's own sampling settings, all optional. */
export type VoiceSettings = Partial<
  Record<
    | 'stability'
    | 'similarity_boost'
    | 'style'
    | 'speed'
    | 'exaggeration'
    | 'temperature'
    | 'cfg_weight'
    | 'top_p'
    | 'min_p'
    | 'top_k'
    | 'repetition_penalty',
    number
  >
> & { use_speaker_boost?: boolean };

export type ClientMessage =
  | { text: ' '; context_id: string; voice_settings: VoiceSettings }
  | { text: string; context_id: string }
  | { text: ''; context_id: string; flush: true }
  | { context_id: string; close_context: true };

export type ServerMessage =
  | {
      kind: 'audio';
      audio: string;
      contextId: string | null;
      /** Where sentences' audio begins (samples from the context's start): our extension. */
      segmentStarts: number[];
    }
  | { kind: 'final'; contextId: string | null }
  | {
      kind: 'error';
      message: string;
      error: string;
      code: number | null;
      contextId: string | null;
      retryAfter: number | null;
    };

function contextOf(body: Record<string, unknown>): string | null {
  const id = body.contextId ?? body.context_id;
  return typeof id === 'string' ? id : null;
}

/** A server message as the client reads it; null for anything else (ignored, as clients do). */
export function parseServerMessage(data: unknown): ServerMessage | null {
  if (typeof data !== 'string') return null;
  let body: unknown;
  try {
    body = JSON.parse(data);
  } catch {
    return null;
  }
  if (!body || typeof body !== 'object' || Array.isArray(body)) return null;
  const b = body as Record<string, unknown>;
  const contextId = contextOf(b);
  if (typeof b.audio === 'string' && b.audio.length > 0) {
    const starts = Array.isArray(b.segmentStarts) ? b.segmentStarts : [];
    const segmentStarts = starts.filter((x): x is number => typeof x === 'number');
    return { kind: 'audio', audio: b.audio, contextId, segmentStarts };
  }
  if (b.isFinal === true) return { kind: 'final', contextId };
  if (typeof b.message === 'string' || typeof b.error === 'string') {
    return {
      kind: 'error',
      message: typeof b.message === 'string' ? b.message : '',
      error: typeof b.error === 'string' ? b.error : '',
      code: typeof b.code === 'number' ? b.code : null,
      contextId,
      retryAfter: typeof b.retry_after === 'number' ? b.retry_after : null,
    };
  }
  return null;
}

function sentence(text: string): string {
  const trimmed = text.trim();
  if (!trimmed) return trimmed;
  const first = trimmed.charAt(0).toUpperCase() + trimmed.slice(1);
  return /[.!?]$/.test(first) ? first : `${first}.`;
}

/** An error message from the server in plain words. */
export function serverMessageError(
  message: Extract<ServerMessage, { kind: 'error' }>,
): ChatterboxError {
  const extra = message.code === null ? {} : { status: message.code };
  const later = message.retryAfter ? `in ${message.retryAfter} seconds` : 'in a few seconds';
  switch (message.error) {
    case 'too_many_concurrent_requests':
      return new ChatterboxError('busy', `The server is busy, try again ${later}.`, extra);
    case 'model_not_ready':
      return new ChatterboxError(
        'loading',
        `The speech model is still loading, try again ${later}.`,
        extra,
      );
    case 'input_timeout_exceeded':
      return new ChatterboxError(
        'timeout',
        'The server closed the connection: no text came for too long.',
        extra,
      );
  }
  const kind = message.error.startsWith('invalid_') || message.code === 422 ? 'invalid' : 'server';
  return new ChatterboxError(kind, sentence(message.message || message.error), extra);
}

// The WebSocket members used here, so tests can pass a fake.
export interface WebSocketLike {
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((event: Event) => void) | null;
  onmessage: ((event: MessageEvent) => void) | null;
  onerror: ((event: Event) => void) | null;
  onclose: ((event: CloseEvent) => void) | null;
}
export type WebSocketFactory = (url: string) => WebSocketLike;

export const browserWebSocket: WebSocketFactory = (url) => new WebSocket(url);

export const CLOSE_NORMAL = 1000;

export interface TextStreamCallbacks {
  /** The socket is open and the context-opening message was sent. */
  onOpen?: () => void;
  /** One audio message's base64 payload. */
  onAudio?: (base64: string, segmentStarts: number[]) => void;
  /** The context is over (`isFinal`): no more audio for it. */
  onFinal?: () => void;
  /** An error message from the server, or a connection that failed or closed too early. */
  onError?: (error: ChatterboxError) => void;
  /** The socket is closed (after any of the above). */
  onClose?: (code: number) => void;
}

export interface TextStreamOptions extends TextStreamCallbacks {
  url: string;
  contextId: string;
  voiceSettings?: VoiceSettings;
  socket?: WebSocketFactory;
}

export type ClientState = 'connecting' | 'open' | 'closing-context' | 'final' | 'closed';

/**
 * One context on one socket. `connect` opens the socket and, once it is open, the context
 * (`{"text": " ", "voice_settings", "context_id"}`); `sendText` adds to it, `finish` flushes
 * and closes it (the speech is completed), `interrupt` closes it without a flush (generation
 * stops at once); after `isFinal` the socket is closed. Messages of other contexts are ignored.
 */
export class TextStreamClient {
  readonly contextId: string;
  readonly sent: ClientMessage[] = [];
  private readonly options: TextStreamOptions;
  private ws: WebSocketLike | null = null;
  private current: ClientState = 'connecting';
  private interrupted = false;
  private failed = false;
  private everOpen = false;

  constructor(options: TextStreamOptions) {
    this.options = options;
    this.contextId = options.contextId;
  }

  get state(): ClientState {
    return this.current;
  }

  /** Opens the socket at `url` (default: the options' URL, e.g. with a token added). */
  connect(url: string = this.options.url): void {
    if (this.ws || this.current !== 'connecting') return;
    const ws = (this.options.socket ?? browserWebSocket)(url);
    this.ws = ws;
    ws.onopen = () => {
      if (this.current !== 'connecting') return;
      this.everOpen = true;
      this.current = 'open';
      this.send({
        text: ' ',
        context_id: this.contextId,
        voice_settings: this.options.voiceSettings ?? {},
      });
      this.options.onOpen?.();
    };
    ws.onmessage = (event) => {
      this.receive(event.data);
    };
    ws.onerror = () => undefined; // onclose follows with the code
    ws.onclose = (event) => {
      this.closed(event.code);
    };
  }

  /** A piece of text (a word with its trailing space). */
  sendText(text: string): void {
    if (this.current === 'open') this.send({ text, context_id: this.contextId });
  }

  /** The text is complete: generate what is buffered, then end the context. */
  finish(): void {
    if (this.current !== 'open') return;
    this.send({ text: '', context_id: this.contextId, flush: true });
    this.send({ context_id: this.contextId, close_context: true });
    this.current = 'closing-context';
  }

  /**
   * Stop now: `close_context` not right after the end-of-input flush is an interruption, and
   * so is a second one after `finish` (the rest of the speech was still coming): the server
   * stops generating and sends `isFinal`. Before the socket opened, it is simply closed.
   */
  interrupt(): void {
    if (this.current === 'connecting') {
      this.close();
      return;
    }
    if (this.current !== 'open' && this.current !== 'closing-context') return;
    if (!this.interrupted) this.send({ context_id: this.contextId, close_context: true });
    this.interrupted = true;
    this.current = 'closing-context';
  }

  /** Closes the socket (normal closure); no callback runs after it but `onClose`. */
  close(): void {
    if (this.current === 'closed') return;
    const ws = this.ws;
    this.closed(CLOSE_NORMAL, true);
    try {
      ws?.close(CLOSE_NORMAL);
    } catch {
      // already closed
    }
  }

  private send(message: ClientMessage): void {
    this.sent.push(message);
    try {
      this.ws?.send(JSON.stringify(message));
    } catch {
      // the close event reports it
    }
  }

  private receive(data: unknown): void {
    if (this.current === 'closed' || this.current === 'final') return;
    const message = parseServerMessage(data);
    if (!message) return;
    if (message.contextId !== null && message.contextId !== this.contextId) return;
    switch (message.kind) {
      case 'audio':
        this.options.onAudio?.(message.audio, message.segmentStarts);
        return;
      case 'final':
        this.current = 'final';
        this.options.onFinal?.();
        this.close();
        return;
      case 'error':
        this.failed = true;
        this.options.onError?.(serverMessageError(message));
        return;
    }
  }

  private closed(code: number, byUs = false): void {
    if (this.current === 'closed') return;
    const before = this.current;
    this.current = 'closed';
    if (this.ws) {
      this.ws.onopen = null;
      this.ws.onmessage = null;
      this.ws.onerror = null;
      this.ws.onclose = null;
    }
    if (!byUs && before !== 'final' && !this.failed) {
      this.options.onError?.(
        this.everOpen
          ? new ChatterboxError(
              'stream',
              `The connection closed before the speech was complete (code ${code}).`,
              { status: code },
            )
          : networkError(),
      );
    }
    this.options.onClose?.(code);
  }
}

// --- pacing ------------------------------------------------------------------------------

/** Milliseconds and timers: the page's, or a test's. */
export interface Clock {
  now(): number;
  setTimeout(callback: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const browserClock: Clock = {
  now: () => performance.now(),
  setTimeout: (callback, ms) => globalThis.setTimeout(callback, ms),
  clearTimeout: (handle) => {
    globalThis.clearTimeout(handle as ReturnType<typeof setTimeout>);
  },
};

export const MIN_WORDS_PER_SECOND = 2;
export const MAX_WORDS_PER_SECOND = 30;
export const DEFAULT_WORDS_PER_SECOND = 15;

export interface WordPacerOptions {
  words: readonly string[];
  wordsPerSecond: number;
  clock?: Clock;
  /** Called for each word at its time, with the clock's time. */
  onWord: (word: string, index: number, at: number) => void;
  /** Called right after the last word (not called when stopped). */
  onDone: (at: number) => void;
}

/**
 * Word `i` is due `i / wordsPerSecond` seconds after `start` (the first at once): each timer
 * aims at the next word's due time, so late timers do not add up to drift.
 */
export class WordPacer {
  private readonly options: WordPacerOptions;
  private readonly clock: Clock;
  private readonly intervalMs: number;
  private startedAt = 0;
  private next = 0;
  private timer: unknown = null;
  private running = false;

  constructor(options: WordPacerOptions) {
    if (!(options.wordsPerSecond > 0)) throw new RangeError('wordsPerSecond must be positive');
    this.options = options;
    this.clock = options.clock ?? browserClock;
    this.intervalMs = 1000 / options.wordsPerSecond;
  }

  /** Words sent so far. */
  get sent(): number {
    return this.next;
  }

  get active(): boolean {
    return this.running;
  }

  start(): void {
    if (this.running || this.next > 0) return;
    this.running = true;
    this.startedAt = this.clock.now();
    this.step();
  }

  stop(): void {
    this.running = false;
    if (this.timer !== null) this.clock.clearTimeout(this.timer);
    this.timer = null;
  }

  private step(): void {
    this.timer = null;
    const { words, onWord, onDone } = this.options;
    const now = this.clock.now();
    // Send every word that is due (a timer that fired late catches up at once).
    while (this.running && this.next < words.length && this.dueAt(this.next) <= now) {
      const index = this.next;
      this.next += 1;
      onWord(words[index] ?? '', index, now);
    }
    if (!this.running) return;
    if (this.next >= words.length) {
      this.running = false;
      onDone(now);
      return;
    }
    const wait = Math.max(0, this.dueAt(this.next) - now);
    this.timer = this.clock.setTimeout(() => {
      this.step();
    }, wait);
  }

  private dueAt(index: number): number {
    return this.startedAt + index * this.intervalMs;
  }
}

// --- sentence bookkeeping ----------------------------------------------------------------

export interface SentenceTiming {
  index: number;
  text: string;
  /** Clock times (ms): null until known. */
  lastWordSentAt: number | null;
  firstAudioReceivedAt: number | null;
  /** When its first audio starts playing (the audio clock's schedule, on the same clock). */
  firstAudioPlaysAt: number | null;
  /** Audio attributed to the sentence, in seconds. */
  audioSeconds: number;
}

/** Seconds from a sentence's last word being sent to its first audio playing. */
export function sentenceLatency(timing: SentenceTiming): number | null {
  if (timing.lastWordSentAt === null || timing.firstAudioPlaysAt === null) return null;
  return (timing.firstAudioPlaysAt - timing.lastWordSentAt) / 1000;
}

/**
 * Which sentence each audio message belongs to. Where the server says where sentences begin
 * (`segmentStarts`, passed as `sentenceStarts`: seconds into the message), that is used.
 * Otherwise (a server without the extension) it is inferred from the order of events, as the
 * server generates a sentence at a time in order:
 * the first audio to arrive once a sentence's last word has been sent starts that sentence
 * (the next one still waiting for audio); any other audio continues the sentence being spoken
 * (or, before any, starts the first: text cut early by the server's length schedule). Exact
 * while generation keeps up with the text; when it falls behind, audio of one sentence that
 * arrives after the next one's last word is counted as the next one's start, so the latency
 * shown is a lower bound.
 */
export class SentenceLog {
  private readonly timings: SentenceTiming[];
  private readonly byLastWord = new Map<number, number>();
  private speaking = -1;
  private serverSaysStarts = false;

  constructor(sentences: readonly SentencePlan[]) {
    this.timings = sentences.map((s, index) => ({
      index,
      text: s.text,
      lastWordSentAt: null,
      firstAudioReceivedAt: null,
      firstAudioPlaysAt: null,
      audioSeconds: 0,
    }));
    sentences.forEach((s, index) => this.byLastWord.set(s.lastWord, index));
  }

  get sentences(): readonly SentenceTiming[] {
    return this.timings;
  }

  /** Word `wordIndex` was sent at `at`; returns the sentence it completed, if any. */
  wordSent(wordIndex: number, at: number): number | null {
    const index = this.byLastWord.get(wordIndex);
    const timing = index === undefined ? undefined : this.timings[index];
    if (!timing || index === undefined) return null;
    this.replace(index, { ...timing, lastWordSentAt: at });
    return index;
  }

  /**
   * Audio of `seconds` arrived at `at` and is scheduled to start playing at `playsAt`; returns
   * the sentence it is counted for (null if there is none, as after the last one).
   */
  audioArrived(
    at: number,
    playsAt: number,
    seconds: number,
    sentenceStarts: readonly number[] | null = null,
  ): number | null {
    this.serverSaysStarts ||= (sentenceStarts?.length ?? 0) > 0;
    if (this.serverSaysStarts) {
      return this.arrivedWithStarts(at, playsAt, seconds, sentenceStarts ?? []);
    }
    const next = this.timings[this.speaking + 1];
    if (next && (next.lastWordSentAt !== null || this.speaking < 0)) {
      this.speaking += 1;
      this.replace(next.index, {
        ...next,
        firstAudioReceivedAt: at,
        firstAudioPlaysAt: playsAt,
        audioSeconds: next.audioSeconds + seconds,
      });
      return next.index;
    }
    const current = this.timings[this.speaking];
    if (!current) return null;
    this.replace(current.index, { ...current, audioSeconds: current.audioSeconds + seconds });
    return current.index;
  }

  private arrivedWithStarts(
    at: number,
    playsAt: number,
    seconds: number,
    starts: readonly number[],
  ): number | null {
    let from = 0;
    for (const offset of starts) {
      const current = this.timings[this.speaking];
      if (current) {
        this.replace(current.index, {
          ...current,
          audioSeconds: current.audioSeconds + (offset - from),
        });
      }
      const next = this.timings[this.speaking + 1];
      if (!next) break;
      this.speaking += 1;
      this.replace(next.index, {
        ...next,
        firstAudioReceivedAt: at,
        firstAudioPlaysAt: playsAt + offset * 1000,
      });
      from = offset;
    }
    const current = this.timings[this.speaking];
    if (!current) return null;
    this.replace(current.index, {
      ...current,
      audioSeconds: current.audioSeconds + (seconds - from),
    });
    return current.index;
  }

  private replace(index: number, timing: SentenceTiming): void {
    this.timings[index] = timing;
  }
}
