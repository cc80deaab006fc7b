import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  buildForm,
  createChatterboxAPI,
  type AudioChunkEvent,
  type DoneEvent,
  type StreamCallbacks,
} from '../../src/lib/api';
import type { ChatterboxError } from '../../src/lib/errors';

const encoder = new TextEncoder();

function sseEvent(event: string, data: unknown): string {
  return `event: ${event}\r\ndata: ${JSON.stringify(data)}\r\n\r\n`;
}

const METRICS = {
  first_chunk_latency: 0.4,
  total_latency: 0.4,
  rtf: 0.5,
  total_audio_duration: 0.2,
  chunks_generated: 1,
};

function chunk(id: number): AudioChunkEvent {
  return {
    chunk_id: id,
    audio_chunk: Buffer.from(new Int16Array([id, -id]).buffer).toString('base64'),
    encoding: 'pcm_s16le',
    sample_rate: 24000,
    metrics: { ...METRICS, chunks_generated: id },
  };
}

/** A streamed body that delivers `text` in pieces of `piece` bytes, then ends (or fails). */
function streamBody(text: string, piece = 7, failAtEnd = false): ReadableStream<Uint8Array> {
  const bytes = encoder.encode(text);
  let at = 0;
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      if (at >= bytes.length) {
        if (failAtEnd) controller.error(new TypeError('network error'));
        else controller.close();
        return;
      }
      controller.enqueue(bytes.slice(at, at + piece));
      at += piece;
    },
  });
}

function sseResponse(body: ReadableStream<Uint8Array>): Response {
  return new Response(body, { status: 200, headers: { 'content-type': 'text/event-stream' } });
}

function jsonResponse(
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { 'content-type': 'application/json', ...headers },
  });
}

function recorder() {
  const seen = {
    chunks: [] as AudioChunkEvent[],
    metrics: [] as number[],
    done: [] as DoneEvent[],
    errors: [] as ChatterboxError[],
  };
  const callbacks: StreamCallbacks = {
    onChunk: (c) => seen.chunks.push(c),
    onMetrics: (m) => seen.metrics.push(m.chunks_generated),
    onComplete: (d) => seen.done.push(d),
    onError: (e) => seen.errors.push(e),
  };
  return { seen, callbacks };
}

type FetchLike = (url: unknown, init?: RequestInit) => Promise<Response>;

/** Streams `{ text: 'x' }` from an API whose fetch is `fetch`: the outcome and what was seen. */
async function streamFrom(fetch: FetchLike, options: { idleTimeoutMs?: number } = {}) {
  const { seen, callbacks } = recorder();
  const outcome = await createChatterboxAPI({ fetch: vi.fn(fetch), ...options }).synthesizeStream(
    { text: 'x' },
    undefined,
    callbacks,
  ).finished;
  return { outcome, seen };
}

afterEach(() => {
  vi.useRealTimers();
});

describe('chatterboxAPI.synthesizeStream', () => {
  it('posts the form and delivers chunks, metrics and done from a split-up SSE body', async () => {
    const text =
      ': ping\n\n' +
      sseEvent('audio_chunk', chunk(1)) +
      sseEvent('audio_chunk', chunk(2)) +
      sseEvent('done', { message: 'Streaming complete', total_chunks: 2, metrics: METRICS });
    const fetch = vi.fn(() => Promise.resolve(sseResponse(streamBody(text, 13))));
    const api = createChatterboxAPI({ fetch, baseUrl: 'http://balancer' });
    const { seen, callbacks } = recorder();
    const handle = api.synthesizeStream(
      { text: 'Hello', temperature: 0.8, chunk_size: 25, seed: undefined },
      new Blob(['RIFF'], { type: 'audio/wav' }),
      callbacks,
    );
    expect(await handle.finished).toBe('complete');
    expect(seen.chunks.map((c) => c.chunk_id)).toEqual([1, 2]);
    expect(seen.metrics).toEqual([1, 2]);
    expect(seen.done).toEqual([
      { message: 'Streaming complete', total_chunks: 2, metrics: METRICS },
    ]);
    expect(seen.errors).toEqual([]);
    const [url, init] = fetch.mock.calls[0] as unknown as [string, RequestInit];
    expect(url).toBe('http://balancer/synthesize-stream');
    expect(init.method).toBe('POST');
    const form = init.body as FormData;
    expect(form.get('text')).toBe('Hello');
    expect(form.get('temperature')).toBe('0.8');
    expect(form.get('chunk_size')).toBe('25');
    expect(form.has('seed')).toBe(false);
    expect(form.get('audio_prompt')).toBeInstanceOf(Blob);
  });

  it('reports a 422 field error in plain words', async () => {
    const { outcome, seen } = await streamFrom(() =>
      Promise.resolve(
        jsonResponse(422, {
          error: 'temperature is 9; it must be a number in (0, 5]',
          field: 'temperature',
          allowed: 'number in (0, 5]',
        }),
      ),
    );
    expect(outcome).toBe('error');
    expect(seen.errors[0]?.message).toBe('Temperature must be a number in (0, 5].');
    expect(seen.errors[0]?.field).toBe('temperature');
    expect(seen.errors[0]?.kind).toBe('invalid');
  });

  it('reports 503 busy with the Retry-After delay, and loading distinctly', async () => {
    const a = await streamFrom(() =>
      Promise.resolve(jsonResponse(503, { error: 'server busy' }, { 'retry-after': '2' })),
    );
    expect(a.seen.errors[0]?.message).toBe('The server is busy, try again in 2 seconds.');
    expect(a.seen.errors[0]?.kind).toBe('busy');

    const b = await streamFrom(() =>
      Promise.resolve(
        jsonResponse(503, { error: 'the model is still loading' }, { 'retry-after': '5' }),
      ),
    );
    expect(b.seen.errors[0]?.kind).toBe('loading');
    expect(b.seen.errors[0]?.message).toBe(
      'The speech model is still loading, try again in 5 seconds.',
    );
  });

  it('reports an error event mid-stream after the chunks before it', async () => {
    const text =
      sseEvent('audio_chunk', chunk(1)) + sseEvent('error', { error: 'synthesis failed: boom' });
    const { outcome, seen } = await streamFrom(() =>
      Promise.resolve(sseResponse(streamBody(text))),
    );
    expect(outcome).toBe('error');
    expect(seen.chunks).toHaveLength(1);
    expect(seen.errors.map((e) => e.message)).toEqual([
      'Synthesis stopped partway: synthesis failed: boom.',
    ]);
  });

  it('reports a stream that ends without done, or breaks', async () => {
    for (const failAtEnd of [false, true]) {
      const { outcome, seen } = await streamFrom(() =>
        Promise.resolve(sseResponse(streamBody(sseEvent('audio_chunk', chunk(1)), 50, failAtEnd))),
      );
      expect(outcome).toBe('error');
      expect(seen.errors).toHaveLength(1);
      expect(seen.errors[0]?.kind).toBe(failAtEnd ? 'network' : 'stream');
    }
  });

  it('reports an unreachable server', async () => {
    const { seen } = await streamFrom(() => Promise.reject(new TypeError('Failed to fetch')));
    expect(seen.errors[0]?.kind).toBe('network');
    expect(seen.errors[0]?.message).toMatch(/Could not reach the server/);
  });

  it('cancel() aborts the request and no callback runs after it', async () => {
    let signal: AbortSignal | undefined;
    const fetch = vi.fn((_url: unknown, init?: RequestInit) => {
      signal = init?.signal ?? undefined;
      const body = new ReadableStream<Uint8Array>({
        start(controller) {
          controller.enqueue(encoder.encode(sseEvent('audio_chunk', chunk(1))));
          signal?.addEventListener('abort', () => {
            controller.error(new DOMException('aborted', 'AbortError'));
          });
        },
      });
      return Promise.resolve(sseResponse(body));
    });
    const { seen, callbacks } = recorder();
    const handle = createChatterboxAPI({ fetch }).synthesizeStream({ text: 'x' }, undefined, {
      ...callbacks,
      onChunk: (c) => {
        seen.chunks.push(c);
        handle.cancel();
      },
    });
    expect(await handle.finished).toBe('cancelled');
    expect(signal?.aborted).toBe(true);
    expect(seen.chunks).toHaveLength(1);
    expect(seen.errors).toEqual([]);
    expect(seen.done).toEqual([]);
  });

  it('gives up on a silent server after the idle timeout', async () => {
    const silent: FetchLike = (_url, init) => {
      const body = new ReadableStream<Uint8Array>({
        start(controller) {
          init?.signal?.addEventListener('abort', () => {
            controller.error(new DOMException('aborted', 'AbortError'));
          });
        },
      });
      return Promise.resolve(sseResponse(body));
    };
    const { outcome, seen } = await streamFrom(silent, { idleTimeoutMs: 50 });
    expect(outcome).toBe('error');
    expect(seen.errors[0]?.kind).toBe('timeout');
  });

  it('refuses a reply that is not an event stream', async () => {
    const { seen } = await streamFrom(() =>
      Promise.resolve(new Response('<html>', { headers: { 'content-type': 'text/html' } })),
    );
    expect(seen.errors[0]?.message).toBe('The server did not answer with an audio stream.');
  });

  it('reports a malformed event as a stream error', async () => {
    const { seen } = await streamFrom(() =>
      Promise.resolve(sseResponse(streamBody('event: audio_chunk\ndata: {not json\n\n'))),
    );
    expect(seen.errors[0]?.kind).toBe('stream');
  });
});

describe('chatterboxAPI regular and voice calls', () => {
  it('synthesize returns the WAV and the timing headers', async () => {
    const fetch = vi.fn(() =>
      Promise.resolve(
        new Response(new Uint8Array([82, 73, 70, 70]), {
          headers: {
            'content-type': 'audio/wav',
            'x-total-latency': '1.2500',
            'x-audio-duration': '2.0000',
            'x-rtf': '0.6250',
          },
        }),
      ),
    );
    const result = await createChatterboxAPI({ fetch }).synthesize({ text: 'x' });
    expect(result.audio.size).toBe(4);
    expect([result.totalLatency, result.audioDuration, result.rtf]).toEqual([1.25, 2, 0.625]);
  });

  it('synthesize throws a plain-words error', async () => {
    const fetch = vi.fn(() =>
      Promise.resolve(
        jsonResponse(413, {
          error: 'too big',
          field: 'audio_prompt',
          allowed: 'at most 10485760 bytes',
        }),
      ),
    );
    await expect(createChatterboxAPI({ fetch }).synthesize({ text: 'x' })).rejects.toMatchObject({
      kind: 'too-large',
      message: 'That audio file is too large (at most 10485760 bytes).',
    });
  });

  it('lists, creates and deletes voices', async () => {
    const voice = { id: 'anna-1234abcd', name: 'Anna', created_at: 1, prompt_sha256: 'ab' };
    const fetch = vi.fn((_url: unknown, init?: RequestInit) => {
      if (init?.method === 'GET') return Promise.resolve(jsonResponse(200, { voices: [voice] }));
      if (init?.method === 'POST') return Promise.resolve(jsonResponse(201, voice));
      return Promise.resolve(new Response(null, { status: 204 }));
    });
    const api = createChatterboxAPI({ fetch });
    expect(await api.listVoices()).toEqual([voice]);
    expect(await api.createVoice('Anna', new File(['x'], 'anna.wav'))).toEqual(voice);
    const form = (fetch.mock.calls[1] as unknown as [string, RequestInit])[1].body as FormData;
    expect(form.get('name')).toBe('Anna');
    expect((form.get('audio') as File).name).toBe('anna.wav');
    await api.deleteVoice('anna-1234abcd');
    expect(fetch.mock.calls[2]?.[0]).toBe('/voices/anna-1234abcd');
  });

  it('explains an unusable voice recording', async () => {
    const fetch = vi.fn(() =>
      Promise.resolve(
        jsonResponse(422, {
          error: 'audio prompt is 1.0 s long; it must be longer than 5 s',
          field: 'audio_prompt',
        }),
      ),
    );
    await expect(
      createChatterboxAPI({ fetch }).createVoice('A', new Blob(['x'])),
    ).rejects.toMatchObject({
      message:
        "That audio file can't be used: audio prompt is 1.0 s long; it must be longer than 5 s.",
    });
  });
});

describe('buildForm', () => {
  it('leaves out empty values and names the prompt file', () => {
    const form = buildForm({ text: 'hi', voice: '', top_k: 0 }, new File(['x'], 'me.flac'));
    expect(form.get('top_k')).toBe('0');
    expect(form.has('voice')).toBe(false);
    expect((form.get('audio_prompt') as File).name).toBe('me.flac');
  });

  it('sends the language as a form field', () => {
    expect(buildForm({ text: 'こんにちは', language: 'ja' }).get('language')).toBe('ja');
    expect(buildForm({ text: 'hi' }).has('language')).toBe(false);
  });
});
