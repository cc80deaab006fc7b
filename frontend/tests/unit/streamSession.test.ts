import { describe, expect, it, vi } from 'vitest';
import {
  createChatterboxAPI,
  type AudioChunkEvent,
  type DoneEvent,
  type StreamCallbacks,
  type StreamHandle,
  type StreamMetrics,
  type StreamOutcome,
  type SynthesisParams,
} from '../../src/lib/api';
import { ChatterboxError } from '../../src/lib/errors';
import {
  IDLE_VIEW,
  StreamSession,
  isActive,
  statusText,
  type AudioProvider,
  type StreamView,
} from '../../src/lib/streamSession';
import type { PlaybackTrace } from '../../src/lib/trace';
import { WAV_HEADER_BYTES } from '../../src/lib/wav';
import { FakeAudioContext } from './fakeWebAudio';

const RATE = 24000;

/** The fake Web Audio context with the two members the session reads on top of playback's. */
class SessionContext extends FakeAudioContext {
  state: 'suspended' | 'running' | 'closed' = 'running';
  /** Whether the browser lets `resume` through (it refuses outside a gesture). */
  allowResume = true;
  resume = vi.fn(() => {
    if (this.allowResume) this.state = 'running';
    return Promise.resolve();
  });
}

const METRICS: StreamMetrics = {
  first_chunk_latency: 0.2,
  total_latency: 0.2,
  rtf: 0.5,
  total_audio_duration: 0.1,
  chunks_generated: 1,
};

function pcmBase64(samples: number, value = 1000): string {
  return Buffer.from(new Int16Array(samples).fill(value).buffer).toString('base64');
}

function chunkEvent(id: number, samples: number, metrics: Partial<StreamMetrics> = {}) {
  return {
    chunk_id: id,
    audio_chunk: pcmBase64(samples),
    encoding: 'pcm_s16le',
    sample_rate: RATE,
    metrics: { ...METRICS, chunks_generated: id, ...metrics },
  } satisfies AudioChunkEvent;
}

/**
 * A stand-in for the API's `synthesizeStream` that the test drives event by event. It keeps the
 * real one's contract: no callback after `cancel`, and `finished` settles once, never rejecting.
 */
class FakeStreamApi {
  readonly requests: Array<{ params: SynthesisParams; audioPrompt: Blob | undefined }> = [];
  private streams: Array<{
    callbacks: StreamCallbacks;
    settle: (outcome: StreamOutcome) => void;
    cancelled: boolean;
  }> = [];

  synthesizeStream = (
    params: SynthesisParams,
    audioPrompt: Blob | undefined,
    callbacks: StreamCallbacks,
  ): StreamHandle => {
    this.requests.push({ params, audioPrompt });
    let settle: (outcome: StreamOutcome) => void = () => undefined;
    const finished = new Promise<StreamOutcome>((resolve) => {
      settle = resolve;
    });
    const stream = { callbacks, settle, cancelled: false };
    this.streams.push(stream);
    return {
      cancel: () => {
        stream.cancelled = true;
        settle('cancelled');
      },
      finished,
    };
  };

  private get open() {
    const stream = this.streams.at(-1);
    if (!stream) throw new Error('no request was made');
    return stream;
  }

  cancelled(index = this.streams.length - 1): boolean {
    return this.streams[index]?.cancelled ?? false;
  }

  chunk(event: AudioChunkEvent): void {
    if (!this.open.cancelled) this.open.callbacks.onChunk?.(event);
  }

  complete(done: DoneEvent): void {
    if (this.open.cancelled) return;
    this.open.callbacks.onComplete?.(done);
    this.open.settle('complete');
  }

  fail(error: ChatterboxError): void {
    if (this.open.cancelled) return;
    this.open.callbacks.onError?.(error);
    this.open.settle('error');
  }
}

function setup(
  options: {
    api?: Pick<ReturnType<typeof createChatterboxAPI>, 'synthesizeStream'>;
    state?: SessionContext['state'];
    supported?: boolean;
  } = {},
) {
  const ctx = new SessionContext(RATE);
  ctx.state = options.state ?? 'running';
  const fakeApi = new FakeStreamApi();
  const clock = { ms: 5000 };
  const views: StreamView[] = [];
  const traces: PlaybackTrace[] = [];
  const audio = {
    supported: vi.fn(() => options.supported ?? true),
    unlock: vi.fn(() => {
      if (ctx.state === 'suspended') void ctx.resume();
      return ctx;
    }),
    current: vi.fn(() => ctx),
  } satisfies AudioProvider;
  const session = new StreamSession({
    api: options.api ?? fakeApi,
    audio,
    now: () => clock.ms,
    onView: (view) => views.push(view),
    publish: (trace) => traces.push(trace),
  });
  const lastView = (): StreamView => views.at(-1) ?? IDLE_VIEW;
  const trace = (): PlaybackTrace => {
    const t = traces.at(-1);
    if (!t) throw new Error('no trace published');
    return t;
  };
  return { session, fakeApi, ctx, clock, views, lastView, trace, audio };
}

const encoder = new TextEncoder();

function sse(event: string, data: unknown): string {
  return `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
}

/** The real API over a fetch that answers with `response`. */
function realApi(response: () => Response) {
  const fetch = vi.fn(() => Promise.resolve(response()));
  return { api: createChatterboxAPI({ fetch }), fetch };
}

function sseResponse(text: string): Response {
  const bytes = encoder.encode(text);
  return new Response(
    new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(bytes);
        controller.close();
      },
    }),
    { status: 200, headers: { 'content-type': 'text/event-stream' } },
  );
}

describe('StreamSession', () => {
  it('streams a request to the end: phases, chunk counts, received seconds, first-audio time and result', async () => {
    const { session, fakeApi, ctx, clock, views, lastView, trace } = setup();
    const prompt = new Blob(['RIFF']);
    const result = session.play({ params: { text: 'Hello' }, audioPrompt: prompt });

    expect(fakeApi.requests).toEqual([{ params: { text: 'Hello' }, audioPrompt: prompt }]);
    expect(lastView()).toEqual({ ...IDLE_VIEW, phase: 'connecting', playback: 'waiting' });
    expect(statusText(lastView())).toBe('Connecting to the server…');
    expect(trace().phase).toBe('connecting');
    expect(trace().contextSampleRate).toBe(RATE);

    clock.ms += 250;
    fakeApi.chunk(chunkEvent(1, 2400)); // 0.1 s
    expect(lastView()).toMatchObject({
      phase: 'streaming',
      chunks: 1,
      clientFirstAudio: 0.25,
      metrics: { first_chunk_latency: 0.2, chunks_generated: 1 },
    });
    expect(lastView().receivedSeconds).toBeCloseTo(0.1, 12);

    clock.ms += 100;
    fakeApi.chunk(chunkEvent(2, 4800, { first_chunk_latency: 9 })); // 0.2 s
    expect(lastView()).toMatchObject({ phase: 'streaming', chunks: 2, clientFirstAudio: 0.25 });
    expect(lastView().receivedSeconds).toBeCloseTo(0.3, 12);
    expect(lastView().metrics?.chunks_generated).toBe(2);

    const done: DoneEvent = {
      message: 'Streaming complete',
      total_chunks: 2,
      metrics: { ...METRICS, total_audio_duration: 0.3, chunks_generated: 2, token_cap_hit: true },
    };
    clock.ms += 50;
    fakeApi.complete(done);
    expect(lastView()).toMatchObject({ phase: 'complete', done, metrics: done.metrics });
    expect(views.map((v) => v.phase)).toEqual(['connecting', 'streaming', 'streaming', 'complete']);

    const r = await result;
    expect(r).toEqual({
      outcome: 'complete',
      error: null,
      clientFirstAudio: 0.25,
      clientTotal: 0.4,
      serverFirstChunk: 0.2, // the first chunk's, not a later one's
      audioSeconds: r.audioSeconds,
      chunks: 2,
    });
    expect(r.audioSeconds).toBeCloseTo(0.3, 12);

    // Scheduled back to back, traced, and kept for the download.
    const [a, b] = ctx.sources;
    expect(ctx.sources).toHaveLength(2);
    expect(b?.startedAt).toBeCloseTo((a?.startedAt ?? NaN) + 0.1, 12);
    expect(trace().chunks.map((c) => [c.chunkId, c.samples])).toEqual([
      [1, 2400],
      [2, 4800],
    ]);
    expect(trace()).toMatchObject({ phase: 'complete', streamSampleRate: RATE, underruns: 0 });
    expect(session.received.chunks.map((c) => c.length)).toEqual([2400, 4800]);
    expect(session.received.sampleRate).toBe(RATE);
    expect(session.wav().size).toBe(WAV_HEADER_BYTES + 7200 * 2);
  });

  it('follows the audio clock on tick: playing, seconds played, then finished', async () => {
    const { session, fakeApi, ctx, lastView, trace } = setup();
    const result = session.play({ params: { text: 'x' } });
    fakeApi.chunk(chunkEvent(1, 4800)); // 0.2 s
    fakeApi.complete({ message: 'ok', total_chunks: 1 });
    await result;
    expect(lastView().metrics).toEqual({ ...METRICS, chunks_generated: 1 }); // done had none
    const start = ctx.sources[0]?.startedAt ?? NaN;

    session.tick();
    expect(lastView().playback).toBe('waiting');
    expect(statusText(lastView())).toBe('Playing (all audio received).');
    expect(isActive(lastView())).toBe(true);

    ctx.currentTime = start + 0.05;
    session.tick();
    expect(lastView().playback).toBe('playing');
    expect(lastView().playedSeconds).toBeCloseTo(0.05, 6);
    expect(trace().playback).toBe('playing');

    ctx.currentTime = start + 1;
    session.tick();
    expect(lastView()).toMatchObject({ phase: 'complete', playback: 'ended', playedSeconds: 0.2 });
    expect(statusText(lastView())).toBe('Finished.');
    expect(isActive(lastView())).toBe(false);
  });

  it('stops mid-stream: cancels the request, silences the audio and ends stopped', async () => {
    const { session, fakeApi, ctx, lastView, trace } = setup();
    const result = session.play({ params: { text: 'x' } });
    fakeApi.chunk(chunkEvent(1, 4800));
    ctx.currentTime = 0.1;

    session.stop();
    expect(fakeApi.cancelled()).toBe(true);
    expect(lastView()).toMatchObject({ phase: 'stopped', playback: 'ended', chunks: 1 });
    expect(statusText(lastView())).toBe('Stopped.');
    expect(isActive(lastView())).toBe(false);
    expect(ctx.sources[0]?.stoppedAt).toBeGreaterThan(0.1);
    expect(trace().phase).toBe('stopped');

    const r = await result;
    expect(r.outcome).toBe('cancelled');
    expect(r.error).toBeNull();
    expect(r.chunks).toBe(1);
    // What had arrived can still be downloaded.
    expect(session.received.chunks).toHaveLength(1);

    // Stopping again changes nothing.
    const before = lastView();
    session.stop();
    expect(lastView()).toBe(before);
  });

  it('a server error mid-stream: error phase and message, the audio received so far kept', async () => {
    const { api } = realApi(() =>
      sseResponse(
        sse('audio_chunk', chunkEvent(1, 2400)) +
          sse('audio_chunk', chunkEvent(2, 2400)) +
          sse('error', { error: 'synthesis failed: boom' }),
      ),
    );
    const { session, lastView, trace } = setup({ api });
    const r = await session.play({ params: { text: 'x' } });

    const message = 'Synthesis stopped partway: synthesis failed: boom.';
    expect(r.outcome).toBe('error');
    expect(r.error).toBeInstanceOf(ChatterboxError);
    expect(r.error?.message).toBe(message);
    expect(r.chunks).toBe(2);
    expect(r.audioSeconds).toBeCloseTo(0.2, 12);
    expect(lastView()).toMatchObject({ phase: 'error', error: message, chunks: 2 });
    expect(lastView().receivedSeconds).toBeCloseTo(0.2, 12);
    expect(statusText(lastView())).toBe('Stopped by an error.');
    expect(trace()).toMatchObject({ phase: 'error', error: message });
    expect(trace().chunks.map((c) => c.chunkId)).toEqual([1, 2]);
    expect(session.wav().size).toBe(WAV_HEADER_BYTES + 4800 * 2);
  });

  it('a stream error before any chunk: error phase, no audio, nothing played', async () => {
    const { api } = realApi(
      () =>
        new Response(JSON.stringify({ error: 'server busy' }), {
          status: 503,
          headers: { 'content-type': 'application/json', 'retry-after': '2' },
        }),
    );
    const { session, ctx, lastView, views } = setup({ api });
    const r = await session.play({ params: { text: 'x' } });

    expect(r).toMatchObject({
      outcome: 'error',
      clientFirstAudio: null,
      serverFirstChunk: null,
      audioSeconds: 0,
      chunks: 0,
    });
    expect(r.error?.kind).toBe('busy');
    expect(views.map((v) => v.phase)).toEqual(['connecting', 'error']);
    expect(lastView()).toMatchObject({
      phase: 'error',
      error: 'The server is busy, try again in 2 seconds.',
      chunks: 0,
      receivedSeconds: 0,
      clientFirstAudio: null,
    });
    expect(statusText(lastView())).toBe('Could not synthesize.');
    expect(ctx.sources).toHaveLength(0);
    expect(session.received.chunks).toHaveLength(0);
  });

  it('ends the stream with an error when a chunk cannot be decoded', async () => {
    const bad = { ...chunkEvent(2, 1), audio_chunk: 'AA==' }; // one byte: half a sample
    const { api } = realApi(() =>
      sseResponse(sse('audio_chunk', chunkEvent(1, 2400)) + sse('audio_chunk', bad)),
    );
    const { session, lastView } = setup({ api });
    const r = await session.play({ params: { text: 'x' } });
    const message = 'The server sent audio that could not be decoded.';
    expect(r.outcome).toBe('error');
    expect(r.error?.message).toBe(message);
    expect(r.chunks).toBe(1);
    expect(lastView()).toMatchObject({ phase: 'error', error: message, chunks: 1 });
  });

  it('audio blocked: resumes the context in the gesture and reports it held back until sound is enabled', async () => {
    const { session, fakeApi, ctx, audio, lastView, trace } = setup({ state: 'suspended' });
    ctx.allowResume = false; // the browser does not count this as a gesture
    const result = session.play({ params: { text: 'x' } });
    // Unlocked synchronously, before the request could have been awaited.
    expect(audio.unlock).toHaveBeenCalledTimes(1);
    expect(ctx.resume).toHaveBeenCalledTimes(1);
    expect(trace().contextState).toBe('suspended');

    fakeApi.chunk(chunkEvent(1, 2400));
    session.tick();
    expect(lastView().audioBlocked).toBe(true);
    expect(trace().contextState).toBe('suspended');

    ctx.allowResume = true; // a fresh click on "Enable sound"
    session.enableSound();
    expect(ctx.resume).toHaveBeenCalledTimes(2);
    session.tick();
    expect(lastView().audioBlocked).toBe(false);
    expect(trace().contextState).toBe('running');
    fakeApi.complete({ message: 'ok', total_chunks: 1 });
    await result;
  });

  it('counts underruns when a chunk comes after playback ran dry, and shows buffering meanwhile', async () => {
    const { session, fakeApi, ctx, lastView, trace } = setup();
    const result = session.play({ params: { text: 'x' } });
    fakeApi.chunk(chunkEvent(1, 2400)); // 0.1 s from about 0.06 s
    expect(lastView().underruns).toBe(0);

    ctx.currentTime = 0.5; // it has all played and the stream is still open
    session.tick();
    expect(lastView().playback).toBe('buffering');
    expect(statusText(lastView())).toBe('Buffering: waiting for more audio from the server…');

    fakeApi.chunk(chunkEvent(2, 2400));
    expect(lastView().underruns).toBe(1);
    expect(trace().underruns).toBe(1);
    fakeApi.chunk(chunkEvent(3, 2400)); // in time: appended, not an underrun
    expect(lastView().underruns).toBe(1);
    expect(trace().chunks.map((c) => c.underrun)).toEqual([false, true, false]);

    fakeApi.complete({ message: 'ok', total_chunks: 3 });
    await result;
  });

  it('a new play cancels the previous stream and starts from a clean view', async () => {
    const { session, fakeApi, ctx, lastView } = setup();
    const first = session.play({ params: { text: 'one' } });
    fakeApi.chunk(chunkEvent(1, 2400));

    const second = session.play({ params: { text: 'two' } });
    expect(fakeApi.cancelled(0)).toBe(true);
    expect(ctx.sources[0]?.stoppedAt).not.toBeNull();
    expect((await first).outcome).toBe('cancelled');
    expect(lastView()).toEqual({ ...IDLE_VIEW, phase: 'connecting', playback: 'waiting' });
    expect(session.received.chunks).toHaveLength(0);

    fakeApi.chunk(chunkEvent(1, 4800));
    fakeApi.complete({ message: 'ok', total_chunks: 1 });
    expect((await second).chunks).toBe(1);
    expect(session.received.chunks.map((c) => c.length)).toEqual([4800]);
  });

  it('reports an error without sending a request when the browser has no Web Audio', async () => {
    const { session, fakeApi, audio, lastView } = setup({ supported: false });
    const r = await session.play({ params: { text: 'x' } });
    const message = 'This browser cannot play streamed audio.';
    expect(r).toMatchObject({ outcome: 'error', chunks: 0, clientTotal: 0 });
    expect(r.error?.message).toBe(message);
    expect(fakeApi.requests).toHaveLength(0);
    expect(audio.unlock).not.toHaveBeenCalled();
    expect(lastView()).toEqual({ ...IDLE_VIEW, phase: 'error', error: message });
    expect(statusText(lastView())).toBe('Could not synthesize.');
  });
});
