/**
 * The worker's HTTP API, as the balancer serves it on the same origin.
 *
 * `synthesizeStream` posts a form to /synthesize-stream and parses the SSE reply from the fetch
 * body; `synthesize` is regular synthesis (one WAV); the voice calls manage saved voices;
 * `socketToken` gets a single-use token for opening a WebSocket. Every fetch carries the
 * pasted API key, when there is one (lib/apiKey).
 */
import { SOCKET_TOKEN_PATH, apiKeyStore, withApiKey } from './apiKey';
import { ChatterboxError, asChatterboxError, errorFromResponse, isAbort } from './errors';
import { readSseStream, type SseEvent } from './sse';

export interface StreamMetrics {
  first_chunk_latency: number;
  total_latency: number;
  rtf: number;
  total_audio_duration: number;
  chunks_generated: number;
}

export interface AudioChunkEvent {
  chunk_id: number;
  /** base64 of 16-bit little-endian mono PCM */
  audio_chunk: string;
  encoding?: string;
  sample_rate: number;
  metrics: StreamMetrics;
}

export interface DoneMetrics extends StreamMetrics {
  speech_tokens?: number;
  token_cap_hit?: boolean;
  seed?: number;
}

export interface DoneEvent {
  message: string;
  total_chunks: number;
  metrics?: DoneMetrics;
}

export interface SynthesisParams {
  text: string;
  exaggeration?: number;
  temperature?: number;
  cfg_weight?: number;
  chunk_size?: number;
  seed?: number;
  max_new_tokens?: number;
  top_p?: number;
  top_k?: number;
  min_p?: number;
  repetition_penalty?: number;
  /** A saved voice's id (not together with an audio prompt). */
  voice?: string;
  /** ISO 639-1; the server's default is English. */
  language?: string;
}

export interface StreamCallbacks {
  onChunk?: (chunk: AudioChunkEvent) => void;
  onMetrics?: (metrics: StreamMetrics) => void;
  onComplete?: (done: DoneEvent) => void;
  onError?: (error: ChatterboxError) => void;
}

export type StreamOutcome = 'complete' | 'error' | 'cancelled';

export interface StreamHandle {
  /** Aborts the request; no callback runs after it. */
  cancel: () => void;
  /** Settles (never rejects) once the stream is over, whichever way. */
  finished: Promise<StreamOutcome>;
}

export interface RegularResult {
  audio: Blob;
  /** Server-side timings from the X-* headers, in seconds (undefined if not exposed). */
  totalLatency: number | undefined;
  audioDuration: number | undefined;
  rtf: number | undefined;
}

export interface VoiceInfo {
  id: string;
  name: string;
  created_at: number;
  prompt_sha256: string;
  /** The model the voice was made for (it is refused by others); null: not recorded. */
  model?: string | null;
}

export interface HealthInfo {
  status: string;
  /** A worker's: the languages its model speaks (ISO 639-1), once it is loaded. */
  languages?: unknown;
  [key: string]: unknown;
}

export interface ApiOptions {
  /** Prefix for every path; '' is the page's own origin (behind the balancer). */
  baseUrl?: string;
  fetch?: typeof fetch;
  /** The API key to send, read before each request (default: the one the person pasted). */
  apiKey?: () => string | null;
  /**
   * A stream that sends nothing at all for this long is given up. The worker pings every 5 s
   * even while a request waits for the model, so silence means the connection is dead.
   */
  idleTimeoutMs?: number;
}

export const DEFAULT_IDLE_TIMEOUT_MS = 30_000;

export function buildForm(params: SynthesisParams, audioPrompt?: Blob): FormData {
  const form = new FormData();
  for (const [name, value] of Object.entries(params)) {
    if (value === undefined || value === null || value === '') continue;
    form.append(name, String(value));
  }
  if (audioPrompt) {
    const filename = audioPrompt instanceof File ? audioPrompt.name : 'prompt.wav';
    form.append('audio_prompt', audioPrompt, filename);
  }
  return form;
}

function parseEventData(event: SseEvent): unknown {
  try {
    return JSON.parse(event.data);
  } catch {
    throw new ChatterboxError('stream', `The server sent a malformed "${event.event}" event.`);
  }
}

function isAudioChunk(value: unknown): value is AudioChunkEvent {
  if (!value || typeof value !== 'object') return false;
  const chunk = value as Partial<AudioChunkEvent>;
  return (
    typeof chunk.chunk_id === 'number' &&
    typeof chunk.audio_chunk === 'string' &&
    typeof chunk.sample_rate === 'number' &&
    typeof chunk.metrics === 'object'
  );
}

function headerNumber(response: Response, name: string): number | undefined {
  const raw = response.headers.get(name);
  const value = raw === null ? NaN : Number(raw);
  return Number.isFinite(value) ? value : undefined;
}

export function createChatterboxAPI(options: ApiOptions = {}) {
  const base = options.baseUrl ?? '';
  // Called through a closure: `fetch` detached from `window` throws "Illegal invocation".
  const doFetch: typeof fetch = options.fetch ?? ((input, init) => globalThis.fetch(input, init));
  const idleTimeoutMs = options.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS;
  const apiKey = options.apiKey ?? (() => apiKeyStore.get());

  async function request(path: string, init: RequestInit): Promise<Response> {
    let response: Response;
    try {
      response = await doFetch(base + path, withApiKey(init, apiKey()));
    } catch (error) {
      if (isAbort(error)) throw error;
      throw asChatterboxError(error);
    }
    if (!response.ok) throw await errorFromResponse(response);
    return response;
  }

  function synthesizeStream(
    params: SynthesisParams,
    audioPrompt: Blob | undefined,
    callbacks: StreamCallbacks,
  ): StreamHandle {
    const controller = new AbortController();
    let cancelled = false;
    let timedOut = false;
    let idleTimer: ReturnType<typeof setTimeout> | undefined;
    const touch = (): void => {
      clearTimeout(idleTimer);
      idleTimer = setTimeout(() => {
        timedOut = true;
        controller.abort();
      }, idleTimeoutMs);
    };

    async function run(): Promise<StreamOutcome> {
      // Set from the event callbacks (an object, so the checks below see their updates).
      const progress: { ended: 'complete' | 'error' | null } = { ended: null };
      const fail = (error: ChatterboxError): StreamOutcome => {
        if (!cancelled) callbacks.onError?.(error);
        return cancelled ? 'cancelled' : 'error';
      };
      try {
        touch();
        const response = await request('/synthesize-stream', {
          method: 'POST',
          body: buildForm(params, audioPrompt),
          headers: { Accept: 'text/event-stream' },
          signal: controller.signal,
        });
        const type = response.headers.get('content-type') ?? '';
        if (!type.includes('text/event-stream') || !response.body) {
          return fail(
            new ChatterboxError('server', 'The server did not answer with an audio stream.'),
          );
        }
        await readSseStream(response.body, {
          onBytes: touch,
          onEvent: (event) => {
            if (cancelled || progress.ended) return;
            if (event.event === 'audio_chunk') {
              const chunk = parseEventData(event);
              if (!isAudioChunk(chunk)) {
                throw new ChatterboxError(
                  'stream',
                  'The server sent an audio chunk without audio.',
                );
              }
              callbacks.onChunk?.(chunk);
              callbacks.onMetrics?.(chunk.metrics);
            } else if (event.event === 'done') {
              progress.ended = 'complete';
              callbacks.onComplete?.(parseEventData(event) as DoneEvent);
            } else if (event.event === 'error') {
              progress.ended = 'error';
              const body = (parseEventData(event) ?? {}) as { error?: unknown };
              const detail = typeof body.error === 'string' ? body.error : 'unknown error';
              callbacks.onError?.(
                new ChatterboxError('stream', `Synthesis stopped partway: ${detail}.`),
              );
            }
          },
        });
        if (cancelled) return 'cancelled';
        if (progress.ended) return progress.ended;
        return fail(
          new ChatterboxError('stream', 'The connection closed before all the audio arrived.'),
        );
      } catch (error) {
        if (cancelled) return 'cancelled';
        if (progress.ended) return progress.ended; // e.g. the socket dropped after `done`
        if (timedOut) {
          return fail(
            new ChatterboxError(
              'timeout',
              `The server stopped responding (nothing for ${Math.round(idleTimeoutMs / 1000)} s).`,
            ),
          );
        }
        if (isAbort(error)) return 'cancelled';
        return fail(asChatterboxError(error));
      } finally {
        clearTimeout(idleTimer);
        if (progress.ended !== 'complete') controller.abort(); // frees the connection at once
      }
    }

    const finished = run();
    return {
      cancel: () => {
        if (cancelled) return;
        cancelled = true;
        clearTimeout(idleTimer);
        controller.abort();
      },
      finished,
    };
  }

  async function synthesize(
    params: SynthesisParams,
    audioPrompt?: Blob,
    init: { signal?: AbortSignal } = {},
  ): Promise<RegularResult> {
    const response = await request('/synthesize', {
      method: 'POST',
      body: buildForm(params, audioPrompt),
      ...(init.signal ? { signal: init.signal } : {}),
    });
    const audio = await response.blob();
    return {
      audio,
      totalLatency: headerNumber(response, 'x-total-latency'),
      audioDuration: headerNumber(response, 'x-audio-duration'),
      rtf: headerNumber(response, 'x-rtf'),
    };
  }

  async function listVoices(): Promise<VoiceInfo[]> {
    const response = await request('/voices', { method: 'GET' });
    const body = (await response.json()) as { voices?: VoiceInfo[] };
    return body.voices ?? [];
  }

  async function createVoice(name: string, audio: Blob): Promise<VoiceInfo> {
    const form = new FormData();
    form.append('name', name);
    form.append('audio', audio, audio instanceof File ? audio.name : 'voice.wav');
    const response = await request('/voices', { method: 'POST', body: form });
    return (await response.json()) as VoiceInfo;
  }

  async function deleteVoice(id: string): Promise<void> {
    await request(`/voices/${encodeURIComponent(id)}`, { method: 'DELETE' });
  }

  async function health(): Promise<HealthInfo> {
    let response: Response;
    try {
      response = await doFetch(`${base}/health`, withApiKey({ method: 'GET' }, apiKey()));
    } catch (error) {
      throw asChatterboxError(error);
    }
    // A failed worker answers 503 with its status in the body.
    try {
      return (await response.json()) as HealthInfo;
    } catch {
      throw await errorFromResponse(response);
    }
  }

  /**
   * A single-use token for opening a WebSocket with the pasted key (lib/apiKey), or null when
   * there is no key, or the server has none to check (it does not know the endpoint).
   */
  async function socketToken(): Promise<string | null> {
    const key = apiKey();
    if (!key) return null;
    let response: Response;
    try {
      response = await doFetch(base + SOCKET_TOKEN_PATH, withApiKey({ method: 'POST' }, key));
    } catch (error) {
      throw asChatterboxError(error);
    }
    if (response.status === 404) return null;
    if (!response.ok) throw await errorFromResponse(response);
    const body = (await response.json()) as { token?: unknown };
    if (typeof body.token !== 'string' || !body.token) {
      throw new ChatterboxError('server', 'The server did not answer with a socket token.');
    }
    return body.token;
  }

  return {
    synthesizeStream,
    synthesize,
    listVoices,
    createVoice,
    deleteVoice,
    health,
    socketToken,
  };
}

export type ChatterboxAPI = ReturnType<typeof createChatterboxAPI>;

export const chatterboxAPI: ChatterboxAPI = createChatterboxAPI();
