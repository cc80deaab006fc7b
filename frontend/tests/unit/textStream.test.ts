import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import {
  SentenceLog,
  TextStreamClient,
  WordPacer,
  endsSentence,
  parseServerMessage,
  planSentences,
  sentenceLatency,
  serverMessageError,
  splitWords,
  textStreamUrl,
  type Clock,
  type SentenceTiming,
} from '../../src/lib/textStream';
import { fakeSockets } from './fakeWebSocket';

const URL = 'ws://host/v1/text-to-speech/default/multi-stream-input?output_format=pcm_24000';

/** Timers on a clock the test moves by hand (so a timer can fire late). */
class ManualClock implements Clock {
  ms = 0;
  timers: Array<{ at: number; fn: () => void; id: number }> = [];
  private ids = 0;
  now = (): number => this.ms;
  setTimeout = (fn: () => void, ms: number): number => {
    this.ids += 1;
    this.timers.push({ at: this.ms + ms, fn, id: this.ids });
    return this.ids;
  };
  clearTimeout = (id: unknown): void => {
    this.timers = this.timers.filter((t) => t.id !== id);
  };
  /** Jumps to `ms` and runs the timers due by then, as one late wake-up would. */
  jump(ms: number): void {
    this.ms = ms;
    const due = this.timers.filter((t) => t.at <= ms);
    this.timers = this.timers.filter((t) => t.at > ms);
    for (const t of due) t.fn();
  }
}

const fakeTimerClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (h) => {
    clearTimeout(h as ReturnType<typeof setTimeout>);
  },
};

describe('the text: words and sentences', () => {
  it('splits text into words, each with its trailing space', () => {
    expect(splitWords('Hello  world.\nHow are\tyou? ')).toEqual([
      'Hello ',
      'world. ',
      'How ',
      'are ',
      'you? ',
    ]);
    expect(splitWords('   \n ')).toEqual([]);
    expect(splitWords('')).toEqual([]);
  });

  it('ends sentences where the server does: a terminator, maybe closed by quotes or brackets', () => {
    for (const word of ['end. ', 'really? ', 'wow! ', 'pause; ', 'so… ', '"done." ', 'this.) ']) {
      expect(endsSentence(word)).toBe(true);
    }
    for (const word of ['word ', 'comma, ', 'dash- ', '3.5 ', 'colon: ']) {
      expect(endsSentence(word)).toBe(false);
    }
  });

  it('sends Chinese and Japanese a character at a time, punctuation with its character', () => {
    expect(splitWords('你好。我很好！')).toEqual(['你', '好。', '我', '很', '好！ ']);
    expect(splitWords('「行こう。」と\n言った')).toEqual([
      '「',
      '行',
      'こ',
      'う。」',
      'と ',
      '言',
      'っ',
      'た ',
    ]);
    expect(splitWords('我用iPhone。好')).toEqual(['我', '用', 'iPhone。', '好 ']);
  });

  it('ends sentences where the server does in every script', () => {
    for (const word of [
      '好。',
      'う。」',
      '好！ ',
      'す．',
      'بخير؟ ',
      'है। ',
      'है॥ ',
      'κάνεις\u037e ',
    ]) {
      expect(endsSentence(word), word).toBe(true);
    }
    for (const word of ['好', '好，', 'hi!', 'بخير، ', 'κάνεις\u037e']) {
      expect(endsSentence(word), word).toBe(false);
    }
    // A half-width stop with no space after it, before an ideograph: as the server sees it.
    expect(endsSentence('Hi!', '你')).toBe(true);
    expect(endsSentence('Hi!', 'there')).toBe(false);
  });

  it('plans the sentences of text without spaces', () => {
    expect(planSentences(splitWords('你好。我很好！你呢')).map((s) => s.text)).toEqual([
      '你好。',
      '我很好！',
      '你呢',
    ]);
  });

  it('plans sentences by word index; the last word always ends one', () => {
    const words = splitWords('One two. Three! Four five six');
    expect(planSentences(words)).toEqual([
      { text: 'One two.', firstWord: 0, lastWord: 1 },
      { text: 'Three!', firstWord: 2, lastWord: 2 },
      { text: 'Four five six', firstWord: 3, lastWord: 5 },
    ]);
    expect(planSentences([])).toEqual([]);
  });
});

describe('the protocol', () => {
  it('builds the socket URL from the page origin: ws for http, wss for https', () => {
    expect(textStreamUrl({ protocol: 'http:', host: '127.0.0.1:6095' }, 'default')).toBe(
      'ws://127.0.0.1:6095/v1/text-to-speech/default/multi-stream-input?output_format=pcm_24000',
    );
    expect(textStreamUrl({ protocol: 'https:', host: 'tts.example.com' }, 'my voice/1')).toBe(
      'wss://tts.example.com/v1/text-to-speech/my%20voice%2F1/multi-stream-input?output_format=pcm_24000',
    );
    expect(textStreamUrl({ protocol: 'http:', host: 'h' }, '', 'pcm_16000')).toBe(
      'ws://h/v1/text-to-speech/default/multi-stream-input?output_format=pcm_16000',
    );
  });

  it('puts the language in the URL as ElevenLabs names it', () => {
    expect(textStreamUrl({ protocol: 'http:', host: 'h' }, 'default', undefined, 'ja')).toBe(
      'ws://h/v1/text-to-speech/default/multi-stream-input?output_format=pcm_24000&language_code=ja',
    );
  });

  it('parses audio, isFinal and error messages; ignores anything else', () => {
    expect(
      parseServerMessage('{"audio":"AAA=","isFinal":false,"contextId":"c","context_id":"c"}'),
    ).toEqual({ kind: 'audio', audio: 'AAA=', contextId: 'c', segmentStarts: [] });
    expect(parseServerMessage('{"audio":"AAA=","contextId":"c","segmentStarts":[0,4800]}')).toEqual(
      { kind: 'audio', audio: 'AAA=', contextId: 'c', segmentStarts: [0, 4800] },
    );
    expect(parseServerMessage('{"isFinal":true,"context_id":"c"}')).toEqual({
      kind: 'final',
      contextId: 'c',
    });
    expect(
      parseServerMessage(
        '{"message":"busy","error":"too_many_concurrent_requests","code":503,"retry_after":2}',
      ),
    ).toEqual({
      kind: 'error',
      message: 'busy',
      error: 'too_many_concurrent_requests',
      code: 503,
      contextId: null,
      retryAfter: 2,
    });
    for (const junk of ['not json', '[1]', 'null', '{"audio":""}', '{"alignment":{}}', 42]) {
      expect(parseServerMessage(junk)).toBeNull();
    }
  });

  it('turns server errors into plain words', () => {
    const error = (body: Record<string, unknown>) => {
      const parsed = parseServerMessage(JSON.stringify(body));
      if (parsed?.kind !== 'error') throw new Error('not an error message');
      return serverMessageError(parsed);
    };
    const busy = error({
      message: 'x',
      error: 'too_many_concurrent_requests',
      code: 503,
      retry_after: 3,
    });
    expect([busy.kind, busy.message, busy.status]).toEqual([
      'busy',
      'The server is busy, try again in 3 seconds.',
      503,
    ]);
    expect(error({ message: 'x', error: 'model_not_ready', code: 503 }).message).toBe(
      'The speech model is still loading, try again in a few seconds.',
    );
    const voice = error({ message: "unknown voice 'bob'", error: 'invalid_voice', code: 422 });
    expect([voice.kind, voice.message]).toEqual(['invalid', "Unknown voice 'bob'."]);
    expect(error({ message: 'x', error: 'input_timeout_exceeded', code: 1008 }).kind).toBe(
      'timeout',
    );
    expect(
      error({ message: 'generation failed: boom', error: 'generation_failed', code: 500 }),
    ).toMatchObject({ kind: 'server', message: 'Generation failed: boom.' });
  });
});

describe('TextStreamClient', () => {
  function setup(voiceSettings = {}) {
    const sockets = fakeSockets();
    const events: string[] = [];
    const errors: string[] = [];
    const client = new TextStreamClient({
      url: URL,
      contextId: 'ctx-1',
      voiceSettings,
      socket: sockets.factory,
      onOpen: () => events.push('open'),
      onAudio: (audio) => events.push(`audio ${audio}`),
      onFinal: () => events.push('final'),
      onError: (e) => {
        events.push('error');
        errors.push(e.message);
      },
      onClose: (code) => events.push(`close ${code}`),
    });
    client.connect();
    const ws = sockets.made[0];
    if (!ws) throw new Error('no socket made');
    return { client, ws, events, errors, sockets };
  }

  it('opens the context, sends text, then flush and close_context, in that order', () => {
    const { client, ws, events } = setup({ speed: 1 });
    expect(ws.url).toBe(URL);
    client.sendText('early '); // before the socket opened: nothing to send it on
    expect(ws.sent).toEqual([]);
    expect(client.state).toBe('connecting');

    ws.open();
    expect(events).toEqual(['open']);
    client.sendText('Hello ');
    client.sendText('world. ');
    client.finish();
    client.sendText('late '); // after the end: ignored
    expect(ws.messages).toEqual([
      { text: ' ', context_id: 'ctx-1', voice_settings: { speed: 1 } },
      { text: 'Hello ', context_id: 'ctx-1' },
      { text: 'world. ', context_id: 'ctx-1' },
      { text: '', context_id: 'ctx-1', flush: true },
      { context_id: 'ctx-1', close_context: true },
    ]);
    expect(client.sent).toEqual(ws.messages);
    expect(client.state).toBe('closing-context');
  });

  it('passes on its audio, ignores other contexts, and closes the socket after isFinal', () => {
    const { client, ws, events } = setup();
    ws.open();
    ws.audio('AAAA', 'ctx-1');
    ws.audio('BBBB', 'someone-else');
    ws.receive({ audio: 'CCCC', isFinal: false }); // no id: ours (the only context)
    ws.receive('garbage');
    client.finish();
    ws.audio('DDDD', 'ctx-1'); // the rest of the speech, after close_context
    ws.final('ctx-1');
    ws.audio('EEEE', 'ctx-1'); // nothing after the end
    expect(events).toEqual([
      'open',
      'audio AAAA',
      'audio CCCC',
      'audio DDDD',
      'final',
      'close 1000',
    ]);
    expect(ws.closedWith).toBe(1000);
    expect(client.state).toBe('closed');
    ws.drop(1000); // the close handshake: already reported
    expect(events.at(-1)).toBe('close 1000');
  });

  it('interrupts with close_context and no flush, then waits for isFinal', () => {
    const { client, ws, events } = setup();
    ws.open();
    client.sendText('Half ');
    client.interrupt();
    client.interrupt(); // once is enough
    expect(ws.messages.slice(1)).toEqual([
      { text: 'Half ', context_id: 'ctx-1' },
      { context_id: 'ctx-1', close_context: true },
    ]);
    expect(ws.closedWith).toBeNull();
    ws.final('ctx-1');
    expect(events).toEqual(['open', 'final', 'close 1000']);
  });

  it('interrupting after finish closes the context again, which stops the rest of the speech', () => {
    const { client, ws } = setup();
    ws.open();
    client.sendText('All of it. ');
    client.finish();
    client.interrupt();
    client.interrupt(); // once is enough
    expect(ws.messages.slice(1)).toEqual([
      { text: 'All of it. ', context_id: 'ctx-1' },
      { text: '', context_id: 'ctx-1', flush: true },
      { context_id: 'ctx-1', close_context: true },
      { context_id: 'ctx-1', close_context: true },
    ]);
  });

  it('interrupting before the socket opened just closes it, quietly', () => {
    const { client, ws, events } = setup();
    client.interrupt();
    expect(ws.sent).toEqual([]);
    expect(ws.closedWith).toBe(1000);
    expect(events).toEqual(['close 1000']);
    ws.open(); // too late: nothing happens
    expect(ws.sent).toEqual([]);
  });

  it('reports an error message from the server in plain words', () => {
    const { ws, events, errors } = setup();
    ws.open();
    ws.receive({
      message: "unknown voice 'nobody'",
      error: 'invalid_voice',
      code: 422,
      field: 'voice',
      contextId: 'ctx-1',
      context_id: 'ctx-1',
    });
    expect(events).toEqual(['open', 'error']);
    expect(errors).toEqual(["Unknown voice 'nobody'."]);
    ws.drop(1008); // the error already said why
    expect(events).toEqual(['open', 'error', 'close 1008']);
  });

  it('reports a connection that closes before isFinal, and one that never opens', () => {
    const open = setup();
    open.ws.open();
    open.ws.drop(1011, 'internal error');
    expect(open.events).toEqual(['open', 'error', 'close 1011']);
    expect(open.errors).toEqual([
      'The connection closed before the speech was complete (code 1011).',
    ]);

    const never = setup();
    never.ws.drop(1006);
    expect(never.events).toEqual(['error', 'close 1006']);
    expect(never.errors).toEqual([
      'Could not reach the server. Check that it is running and try again.',
    ]);
  });

  it('after close(), nothing more is sent or reported', () => {
    const { client, ws, events } = setup();
    ws.open();
    client.close();
    client.sendText('x ');
    client.finish();
    ws.audio('AAAA', 'ctx-1');
    ws.drop(1006);
    expect(ws.messages).toHaveLength(1); // the opening message only
    expect(events).toEqual(['open', 'close 1000']);
  });
});

describe('WordPacer', () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('sends a word every 1/pace seconds, the first at once, then says it is done', () => {
    const t0 = Date.now();
    const sent: Array<[string, number, number]> = [];
    const done = vi.fn();
    const pacer = new WordPacer({
      words: ['a ', 'b ', 'c ', 'd '],
      wordsPerSecond: 10,
      clock: fakeTimerClock,
      onWord: (word, index, at) => sent.push([word, index, at - t0]),
      onDone: (at) => {
        done(at - t0);
      },
    });
    pacer.start();
    expect(sent).toEqual([['a ', 0, 0]]);
    vi.advanceTimersByTime(99);
    expect(pacer.sent).toBe(1);
    vi.advanceTimersByTime(1);
    expect(pacer.sent).toBe(2);
    vi.advanceTimersByTime(1000);
    expect(sent).toEqual([
      ['a ', 0, 0],
      ['b ', 1, 100],
      ['c ', 2, 200],
      ['d ', 3, 300],
    ]);
    // Done right after the last word, not a word's time later.
    expect(done).toHaveBeenCalledExactlyOnceWith(300);
    expect(pacer.active).toBe(false);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('keeps to the schedule: a late timer catches up instead of drifting', () => {
    const clock = new ManualClock();
    const at: number[] = [];
    const pacer = new WordPacer({
      words: ['a ', 'b ', 'c ', 'd ', 'e '],
      wordsPerSecond: 4, // every 250 ms
      clock,
      onWord: (_word, _index, time) => at.push(time),
      onDone: () => at.push(-1),
    });
    pacer.start();
    clock.jump(610); // woke up late: words 1 and 2 were due at 250 and 500
    expect(at).toEqual([0, 610, 610]);
    expect(clock.timers.map((t) => t.at)).toEqual([750]); // word 3 still at 750, not 860
    clock.jump(750);
    clock.jump(1000);
    expect(at).toEqual([0, 610, 610, 750, 1000, -1]);
  });

  it('stops at once: no more words and no done', () => {
    const words: string[] = [];
    const done = vi.fn();
    const pacer = new WordPacer({
      words: ['a ', 'b ', 'c '],
      wordsPerSecond: 2,
      clock: fakeTimerClock,
      onWord: (word) => words.push(word),
      onDone: done,
    });
    pacer.start();
    vi.advanceTimersByTime(500);
    pacer.stop();
    vi.advanceTimersByTime(5000);
    expect(words).toEqual(['a ', 'b ']);
    expect(done).not.toHaveBeenCalled();
    pacer.start(); // a stopped pacer does not start over
    expect(words).toEqual(['a ', 'b ']);
  });

  it('refuses a pace that is not positive', () => {
    const make = (wordsPerSecond: number) =>
      new WordPacer({ words: [], wordsPerSecond, onWord: vi.fn(), onDone: vi.fn() });
    expect(() => make(0)).toThrow(RangeError);
    expect(() => make(Number.NaN)).toThrow(RangeError);
  });
});

describe('SentenceLog', () => {
  const firstOf = (log: SentenceLog): SentenceTiming => {
    const first = log.sentences[0];
    if (!first) throw new Error('no sentences');
    return first;
  };
  const plan = planSentences(splitWords('One two. Three four. Five.'));

  it('records when each sentence was complete and when its first audio arrived and plays', () => {
    const log = new SentenceLog(plan);
    expect(log.wordSent(0, 0)).toBeNull();
    expect(log.wordSent(1, 100)).toBe(0);
    expect(log.audioArrived(300, 360, 0.5)).toBe(0); // sentence 0 starts
    expect(log.wordSent(2, 200)).toBeNull();
    expect(log.audioArrived(350, 860, 0.5)).toBe(0); // sentence 1 not complete: still 0
    expect(log.wordSent(3, 400)).toBe(1);
    expect(log.audioArrived(600, 1360, 0.25)).toBe(1);
    expect(log.audioArrived(650, 1610, 0.25)).toBe(1);
    expect(log.wordSent(4, 500)).toBe(2);
    expect(log.audioArrived(900, 1860, 0.5)).toBe(2);
    expect(log.audioArrived(950, 2360, 0.5)).toBe(2);
    expect(log.sentences).toEqual([
      {
        index: 0,
        text: 'One two.',
        lastWordSentAt: 100,
        firstAudioReceivedAt: 300,
        firstAudioPlaysAt: 360,
        audioSeconds: 1,
      },
      {
        index: 1,
        text: 'Three four.',
        lastWordSentAt: 400,
        firstAudioReceivedAt: 600,
        firstAudioPlaysAt: 1360,
        audioSeconds: 0.5,
      },
      {
        index: 2,
        text: 'Five.',
        lastWordSentAt: 500,
        firstAudioReceivedAt: 900,
        firstAudioPlaysAt: 1860,
        audioSeconds: 1,
      },
    ]);
    expect(log.sentences.map(sentenceLatency)).toEqual([0.26, 0.96, 1.36]);
  });

  it('counts audio before the first sentence is complete as its start (text cut early)', () => {
    const log = new SentenceLog(plan);
    log.wordSent(0, 0);
    expect(log.audioArrived(50, 110, 0.2)).toBe(0);
    log.wordSent(1, 100);
    expect(log.sentences[0]).toMatchObject({ lastWordSentAt: 100, firstAudioPlaysAt: 110 });
    expect(sentenceLatency(firstOf(log))).toBeCloseTo(0.01, 12);
  });

  it('uses the sentence starts the server reports, even when generation falls behind', () => {
    const log = new SentenceLog(plan);
    log.wordSent(1, 100);
    log.wordSent(3, 200);
    log.wordSent(4, 300); // all text sent before any audio
    expect(log.audioArrived(1000, 1000, 1, [0])).toBe(0);
    // Sentence 0 goes on into this message; sentence 1 begins 0.25 s into it.
    expect(log.audioArrived(2000, 2000, 1, [0.25])).toBe(1);
    expect(log.audioArrived(3000, 3000, 0.5, [])).toBe(1);
    expect(log.audioArrived(4000, 3500, 0.5, [0.1])).toBe(2);
    expect(log.sentences.map((s) => s.firstAudioPlaysAt)).toEqual([1000, 2250, 3600]);
    expect(log.sentences.map((s) => s.audioSeconds)).toEqual([1.25, 1.35, 0.4]);
  });

  it('leaves a sentence without audio unknown (an interruption), and nothing past the last', () => {
    const log = new SentenceLog(plan.slice(0, 1));
    expect(sentenceLatency(firstOf(log))).toBeNull();
    log.wordSent(1, 100);
    log.audioArrived(200, 260, 0.1);
    expect(log.audioArrived(300, 360, 0.1)).toBe(0);
    expect(new SentenceLog([]).audioArrived(0, 0, 1)).toBeNull();
  });
});
