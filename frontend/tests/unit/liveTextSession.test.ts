import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import {
  IDLE_LIVE_VIEW,
  LiveTextSession,
  isLiveActive,
  liveStatusText,
  type LiveTextView,
} from '../../src/lib/liveTextSession';
import type { AudioProvider } from '../../src/lib/streamSession';
import { sentenceLatency, type Clock } from '../../src/lib/textStream';
import type { PlaybackTrace } from '../../src/lib/trace';
import { FakeAudioContext } from './fakeWebAudio';
import { fakeSockets, pcmBase64, type FakeWebSocket } from './fakeWebSocket';

const RATE = 24000;
const CONTEXT = 'ctx-test';
const TEXT = 'Hello there. How are you? Fine.';

class SessionContext extends FakeAudioContext {
  state: 'suspended' | 'running' | 'closed' = 'running';
  resume = vi.fn(() => {
    this.state = 'running';
    return Promise.resolve();
  });
}

const clock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (h) => {
    clearTimeout(h as ReturnType<typeof setTimeout>);
  },
};

function setup(options: { supported?: boolean } = {}) {
  const ctx = new SessionContext(RATE);
  const sockets = fakeSockets();
  const views: LiveTextView[] = [];
  const traces: PlaybackTrace[] = [];
  const audio = {
    supported: vi.fn(() => options.supported ?? true),
    unlock: vi.fn(() => ctx),
    current: vi.fn(() => ctx),
  } satisfies AudioProvider;
  const session = new LiveTextSession({
    onView: (view) => views.push(view),
    audio,
    clock,
    socket: sockets.factory,
    url: (voice, language) =>
      `ws://test/v1/text-to-speech/${voice}/multi-stream-input` +
      (language ? `?language_code=${language}` : ''),
    contextId: () => CONTEXT,
    publish: (trace) => traces.push(trace),
  });
  const view = (): LiveTextView => views.at(-1) ?? IDLE_LIVE_VIEW;
  const socket = (): FakeWebSocket => {
    const ws = sockets.made.at(-1);
    if (!ws) throw new Error('no socket opened');
    return ws;
  };
  const trace = (): PlaybackTrace => {
    const t = traces.at(-1);
    if (!t) throw new Error('no trace published');
    return t;
  };
  return { session, ctx, sockets, views, view, socket, trace, audio };
}

/** Seconds since `origin` of a view's clock time. */
const rel = (view: LiveTextView, at: number | null): number | null =>
  at === null || view.origin === null ? null : (at - view.origin) / 1000;

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

describe('LiveTextSession', () => {
  it('opens the socket with the language, and plans Chinese sentences as the server splits them', () => {
    const { session, view, socket } = setup();
    void session.start({
      text: '你好。我很好！',
      wordsPerSecond: 10,
      voiceId: 'default',
      languageCode: 'zh',
    });
    expect(socket().url).toBe(
      'ws://test/v1/text-to-speech/default/multi-stream-input?language_code=zh',
    );
    expect(view().sentences.map((s) => s.text)).toEqual(['你好。', '我很好！']);
    expect(view().wordsTotal).toBe(5);
    session.stop();
  });

  it('sends the text word by word at the pace, then flush and close_context; plays the audio; completes on isFinal', async () => {
    const { session, ctx, view, views, socket, trace, audio } = setup();
    const t0 = Date.now();
    // The audio clock runs with the page's clock, from the start.
    const syncAudioClock = (): void => {
      ctx.currentTime = (Date.now() - t0) / 1000;
    };
    const result = session.start({ text: TEXT, wordsPerSecond: 10, voiceId: 'alloy' });
    expect(audio.unlock).toHaveBeenCalledTimes(1); // in the gesture, before any await
    expect(socket().url).toBe('ws://test/v1/text-to-speech/alloy/multi-stream-input');
    expect(view()).toMatchObject({ phase: 'connecting', wordsTotal: 6, wordsSent: 0 });
    expect(view().sentences.map((s) => s.text)).toEqual(['Hello there.', 'How are you?', 'Fine.']);
    expect(liveStatusText(view())).toBe('Connecting to the server…');

    vi.advanceTimersByTime(40); // connecting takes a while: the pace starts once open
    socket().open();
    expect(view()).toMatchObject({ phase: 'sending', wordsSent: 1 });
    const origin = view().origin ?? NaN;
    expect(origin).toBe(Date.now());
    expect(socket().messages).toEqual([
      { text: ' ', context_id: CONTEXT, voice_settings: {} },
      { text: 'Hello ', context_id: CONTEXT },
    ]);

    vi.advanceTimersByTime(100);
    expect(view().wordsSent).toBe(2); // "there. ": sentence 0 complete at 0.1 s
    expect(rel(view(), view().sentences[0]?.lastWordSentAt ?? null)).toBe(0.1);

    // Audio of sentence 0 arrives 50 ms later: 0.5 s, scheduled a lead (60 ms) after "now".
    vi.advanceTimersByTime(50);
    syncAudioClock();
    socket().audio(pcmBase64(12000, 16384), CONTEXT);
    expect(ctx.sources).toHaveLength(1);
    expect(ctx.sources[0]?.buffer?.data[0]).toBe(0.5); // decoded: 16384 / 32768
    expect(ctx.sources[0]?.buffer?.length).toBe(12000);
    expect(ctx.sources[0]?.startedAt).toBeCloseTo(0.25, 9);
    const first = view().sentences[0];
    expect(rel(view(), first?.firstAudioReceivedAt ?? null)).toBe(0.15);
    expect(rel(view(), first?.firstAudioPlaysAt ?? null)).toBeCloseTo(0.21, 9); // + 60 ms lead
    expect(view().firstAudio).toBeCloseTo(0.21, 9);
    expect(first && sentenceLatency(first)).toBeCloseTo(0.11, 9);
    expect(view()).toMatchObject({ audioMessages: 1, receivedSeconds: 0.5 });

    vi.advanceTimersByTime(350); // the rest of the words: 0.2 .. 0.5 s
    expect(view()).toMatchObject({ phase: 'finishing', wordsSent: 6 });
    expect(liveStatusText(view())).toBe('All text sent; waiting for the rest of the speech…');
    const sent = socket().messages;
    expect(sent.slice(1)).toEqual([
      ...['Hello ', 'there. ', 'How ', 'are ', 'you? ', 'Fine. '].map((text) => ({
        text,
        context_id: CONTEXT,
      })),
      { text: '', context_id: CONTEXT, flush: true },
      { context_id: CONTEXT, close_context: true },
    ]);
    expect(session.sentMessages).toEqual(sent);

    // Sentence 1 and 2 audio (0.1 s each): queued gaplessly after the first chunk, which
    // plays until 0.75 s on the audio clock.
    syncAudioClock();
    socket().audio(pcmBase64(2400), CONTEXT);
    socket().audio(pcmBase64(2400), CONTEXT);
    expect(ctx.sources[1]?.startedAt).toBeCloseTo(0.75, 9);
    expect(ctx.sources[2]?.startedAt).toBeCloseTo(0.85, 9);
    const timings = view().sentences;
    expect(timings.map((s) => s.audioSeconds)).toEqual([0.5, 0.1, 0.1]);
    // Arrived at 0.5 s (0.54 s on the audio clock), so they play 0.21 s and 0.31 s later.
    expect(timings.map((s) => rel(view(), s.firstAudioPlaysAt))).toEqual([
      expect.closeTo(0.21, 9),
      expect.closeTo(0.71, 9),
      expect.closeTo(0.81, 9),
    ]);
    expect(timings.map(sentenceLatency)).toEqual([
      expect.closeTo(0.11, 9),
      expect.closeTo(0.31, 9), // last word ("you? ") at 0.4 s
      expect.closeTo(0.31, 9), // last word ("Fine. ") at 0.5 s
    ]);
    expect(trace().chunks.map((c) => [c.chunkId, c.samples, c.underrun])).toEqual([
      [1, 12000, false],
      [2, 2400, false],
      [3, 2400, false],
    ]);
    expect(trace()).toMatchObject({ streamSampleRate: RATE, phase: 'finishing', underruns: 0 });

    socket().final(CONTEXT);
    expect(view().phase).toBe('complete');
    expect(socket().closedWith).toBe(1000);
    const r = await result;
    expect(r).toMatchObject({ outcome: 'complete', error: null });
    expect(r.sentences).toHaveLength(3);
    expect(r.firstAudio).toBeCloseTo(0.21, 9);
    expect(views.map((v) => v.phase).filter((p, i, a) => p !== a[i - 1])).toEqual([
      'connecting',
      'sending',
      'finishing',
      'complete',
    ]);
    expect(trace().phase).toBe('complete');

    // Then the audio clock: playing, then finished.
    ctx.currentTime = 0.3;
    session.tick();
    expect(view()).toMatchObject({ playback: 'playing' });
    expect(liveStatusText(view())).toBe('Playing (all audio received).');
    expect(isLiveActive(view())).toBe(true);
    ctx.currentTime = 2;
    session.tick();
    expect(view()).toMatchObject({ playback: 'ended', playedSeconds: 0.7 });
    expect(liveStatusText(view())).toBe('Finished.');
    expect(isLiveActive(view())).toBe(false);
  });

  it('Stop interrupts: close_context without a flush, no more words, audio silenced and later audio ignored', async () => {
    const { session, ctx, view, socket, trace } = setup();
    const result = session.start({ text: TEXT, wordsPerSecond: 5, voiceId: 'default' });
    socket().open();
    vi.advanceTimersByTime(200); // "Hello ", "there. "
    socket().audio(pcmBase64(4800), CONTEXT);
    ctx.currentTime = 0.1;
    session.tick();
    expect(view().playback).toBe('playing');
    expect(liveStatusText(view())).toBe('Sending text and playing the speech as it arrives…');

    session.stop();
    expect(view()).toMatchObject({ phase: 'stopped', playback: 'ended', wordsSent: 2 });
    expect(liveStatusText(view())).toBe('Stopped.');
    expect(socket().messages.slice(-2)).toEqual([
      { text: 'there. ', context_id: CONTEXT },
      { context_id: CONTEXT, close_context: true },
    ]);
    expect(ctx.sources[0]?.stoppedAt).toBeGreaterThan(0.1);
    expect(trace().phase).toBe('stopped');

    vi.advanceTimersByTime(1000);
    expect(socket().sent).toHaveLength(4); // open, 2 words, close_context: nothing after
    socket().audio(pcmBase64(4800), CONTEXT); // generated before the server saw close_context
    expect(ctx.sources).toHaveLength(1);
    expect(view().audioMessages).toBe(1);

    socket().final(CONTEXT);
    expect(socket().closedWith).toBe(1000);
    expect(view().phase).toBe('stopped');
    const r = await result;
    expect(r.outcome).toBe('stopped');
    expect(r.sentences.map((s) => s.firstAudioPlaysAt !== null)).toEqual([true, false, false]);
  });

  it('closes the socket itself if the server never confirms the interruption', async () => {
    const { session, socket } = setup();
    const result = session.start({ text: TEXT, wordsPerSecond: 5, voiceId: 'default' });
    socket().open();
    session.stop();
    vi.advanceTimersByTime(2999);
    expect(socket().closedWith).toBeNull();
    vi.advanceTimersByTime(1);
    expect(socket().closedWith).toBe(1000);
    await expect(result).resolves.toMatchObject({ outcome: 'stopped' });
  });

  it('Stop while connecting closes the socket; Stop after the end only silences the audio', async () => {
    const first = setup();
    const connecting = first.session.start({ text: TEXT, wordsPerSecond: 5, voiceId: 'default' });
    first.session.stop();
    expect(first.socket().closedWith).toBe(1000);
    expect(first.view().phase).toBe('stopped');
    await expect(connecting).resolves.toMatchObject({ outcome: 'stopped' });

    const { session, ctx, socket, view } = setup();
    void session.start({ text: 'Short.', wordsPerSecond: 30, voiceId: 'default' });
    socket().open();
    socket().audio(pcmBase64(24000), CONTEXT);
    socket().final(CONTEXT);
    ctx.currentTime = 0.5;
    session.tick();
    expect(view()).toMatchObject({ phase: 'complete', playback: 'playing' });
    session.stop();
    expect(view()).toMatchObject({ phase: 'stopped', playback: 'ended' });
    expect(ctx.sources[0]?.stoppedAt).toBeCloseTo(0.508, 9);
    expect(socket().sent).toHaveLength(4); // open, word, flush, close_context: no second close
  });

  it('a server error: the error shown, words stop, the socket closed, received audio plays out', async () => {
    const { session, ctx, view, socket, trace } = setup();
    const result = session.start({ text: TEXT, wordsPerSecond: 10, voiceId: 'default' });
    socket().open();
    vi.advanceTimersByTime(100);
    socket().audio(pcmBase64(2400), CONTEXT);
    socket().receive({
      message: 'the server is at capacity',
      error: 'too_many_concurrent_requests',
      code: 503,
      retry_after: 2,
      contextId: CONTEXT,
      context_id: CONTEXT,
    });
    const message = 'The server is busy, try again in 2 seconds.';
    expect(view()).toMatchObject({ phase: 'error', error: message, wordsSent: 2 });
    expect(liveStatusText(view())).toBe('Stopped by an error.');
    expect(trace()).toMatchObject({ phase: 'error', error: message });
    expect(socket().closedWith).toBe(1000);
    vi.advanceTimersByTime(1000);
    expect(view().wordsSent).toBe(2);
    expect(ctx.sources[0]?.stoppedAt).toBeNull(); // not silenced: it plays out
    const r = await result;
    expect(r.outcome).toBe('error');
    expect(r.error?.kind).toBe('busy');
  });

  it('a connection that fails, or closes before the end, is an error in plain words', async () => {
    const refused = setup();
    const r1 = refused.session.start({ text: TEXT, wordsPerSecond: 10, voiceId: 'default' });
    refused.socket().drop(1006);
    expect(refused.view()).toMatchObject({
      phase: 'error',
      error: 'Could not reach the server. Check that it is running and try again.',
    });
    expect(liveStatusText(refused.view())).toBe('Could not synthesize.');
    await expect(r1).resolves.toMatchObject({ outcome: 'error' });

    const dropped = setup();
    const r2 = dropped.session.start({ text: TEXT, wordsPerSecond: 10, voiceId: 'default' });
    dropped.socket().open();
    vi.advanceTimersByTime(100);
    dropped.socket().drop(1008, 'policy');
    expect(dropped.view().error).toBe(
      'The connection closed before the speech was complete (code 1008).',
    );
    vi.advanceTimersByTime(1000);
    expect(dropped.view().wordsSent).toBe(2); // the pacer stopped with it
    await expect(r2).resolves.toMatchObject({ outcome: 'error' });
  });

  it('audio that does not decode ends the run with an error', async () => {
    const { session, view, socket } = setup();
    const result = session.start({ text: TEXT, wordsPerSecond: 10, voiceId: 'default' });
    socket().open();
    socket().audio('AA==', CONTEXT); // one byte: half a sample
    expect(view()).toMatchObject({
      phase: 'error',
      error: 'The server sent audio that could not be decoded.',
      audioMessages: 0,
    });
    await expect(result).resolves.toMatchObject({ outcome: 'error' });
  });

  it('refuses empty text and a browser without Web Audio, without connecting', async () => {
    const empty = setup();
    const r1 = await empty.session.start({ text: '  \n', wordsPerSecond: 10, voiceId: 'default' });
    expect(r1.outcome).toBe('error');
    expect(empty.view().error).toBe('Type some text to speak.');
    expect(empty.sockets.made).toHaveLength(0);

    const noAudio = setup({ supported: false });
    const r2 = await noAudio.session.start({ text: TEXT, wordsPerSecond: 10, voiceId: 'default' });
    expect(r2.error?.message).toBe('This browser cannot play streamed audio.');
    expect(noAudio.sockets.made).toHaveLength(0);
    expect(noAudio.audio.unlock).not.toHaveBeenCalled();
  });

  it('a new start replaces the running one: its socket closed, its late events ignored', () => {
    const { session, view, sockets } = setup();
    void session.start({ text: TEXT, wordsPerSecond: 10, voiceId: 'default' });
    const old = sockets.made[0];
    old?.open();
    void session.start({ text: 'Second run.', wordsPerSecond: 10, voiceId: 'default' });
    expect(old?.messages.at(-1)).toEqual({ context_id: CONTEXT, close_context: true });
    expect(old?.closedWith).toBe(1000);
    old?.audio(pcmBase64(2400), CONTEXT);
    old?.final(CONTEXT);
    expect(view()).toMatchObject({ phase: 'connecting', wordsTotal: 2, audioMessages: 0 });
    expect(sockets.made).toHaveLength(2);
  });

  it('halt (unmounting) interrupts and closes without changing the view', () => {
    const { session, view, socket, ctx } = setup();
    void session.start({ text: TEXT, wordsPerSecond: 10, voiceId: 'default' });
    socket().open();
    socket().audio(pcmBase64(2400), CONTEXT);
    const before = view();
    session.halt();
    expect(view()).toBe(before);
    expect(socket().messages.at(-1)).toEqual({ context_id: CONTEXT, close_context: true });
    expect(socket().closedWith).toBe(1000);
    expect(ctx.sources[0]?.stoppedAt).not.toBeNull();
  });

  it('reports sound held back by the browser until it is enabled', () => {
    const { session, ctx, view, socket } = setup();
    ctx.state = 'suspended';
    void session.start({ text: TEXT, wordsPerSecond: 10, voiceId: 'default' });
    socket().open();
    socket().audio(pcmBase64(2400), CONTEXT);
    session.tick();
    expect(view().audioBlocked).toBe(true);
    session.enableSound();
    expect(ctx.resume).toHaveBeenCalledTimes(1);
    session.tick();
    expect(view().audioBlocked).toBe(false);
  });
});
