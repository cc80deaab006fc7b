import { describe, expect, it } from 'vitest';
import { SseDecoder, readSseStream, type SseEvent } from '../../src/lib/sse';

const encoder = new TextEncoder();

function decodeInPieces(
  bytes: Uint8Array,
  cuts: number[],
): { events: SseEvent[]; comments: string[] } {
  const events: SseEvent[] = [];
  const comments: string[] = [];
  const decoder = new SseDecoder({
    onEvent: (e) => events.push(e),
    onComment: (c) => comments.push(c),
  });
  let from = 0;
  for (const cut of [...cuts, bytes.length]) {
    decoder.push(bytes.subarray(from, cut));
    from = cut;
  }
  decoder.end();
  return { events, comments };
}

/** A deterministic pseudo-random generator, so failures reproduce. */
function rng(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state * 1664525 + 1013904223) >>> 0;
    return state / 2 ** 32;
  };
}

const bigPayload = 'A'.repeat(200_000);
const STREAM =
  ': ping\r\n\r\n' +
  'event: audio_chunk\r\n' +
  `data: {"chunk_id": 1, "audio_chunk": "${bigPayload}"}\r\n\r\n` +
  ': ping - 2024-01-01\n\n' +
  'event: audio_chunk\n' +
  'data: {"chunk_id": 2, "text": "héllo — naïve ☃ 🎙️"}\n\n' +
  'id: 7\n' +
  'event: done\r' +
  'data: {"message": "Streaming complete",\r' +
  'data:  "total_chunks": 2}\r\r';

const EXPECTED: SseEvent[] = [
  { event: 'audio_chunk', data: `{"chunk_id": 1, "audio_chunk": "${bigPayload}"}` },
  { event: 'audio_chunk', data: '{"chunk_id": 2, "text": "héllo — naïve ☃ 🎙️"}' },
  { event: 'done', data: '{"message": "Streaming complete",\n "total_chunks": 2}', id: '7' },
];

describe('SseDecoder', () => {
  const bytes = encoder.encode(STREAM);

  it('parses a whole stream: events, multi-line data, ids, comments, CR/LF/CRLF', () => {
    const { events, comments } = decodeInPieces(bytes, []);
    expect(events).toEqual(EXPECTED);
    expect(comments).toEqual(['ping', 'ping - 2024-01-01']);
  });

  it('gives the same events however the bytes are split (every single cut point)', () => {
    // Every boundary in the small tail of the stream, plus a sample across the big event.
    const tailStart = bytes.length - 220;
    const cuts = [...Array.from({ length: 220 }, (_, i) => tailStart + i), 1, 2, 9, 10, 11, 40];
    for (const cut of cuts) {
      expect(decodeInPieces(bytes, [cut]).events, `cut at ${cut}`).toEqual(EXPECTED);
    }
  });

  it('gives the same events for random splits into many pieces (inside UTF-8 sequences too)', () => {
    const random = rng(42);
    for (let trial = 0; trial < 200; trial++) {
      const pieces = 1 + Math.floor(random() * 60);
      const cuts = Array.from({ length: pieces }, () => Math.floor(random() * bytes.length)).sort(
        (a, b) => a - b,
      );
      expect(decodeInPieces(bytes, cuts).events).toEqual(EXPECTED);
    }
  });

  it('handles a stream fed one byte at a time', () => {
    const small = encoder.encode('event: a\ndata: ☃\n\n:c\n\nevent: b\ndata: 2\n\n');
    const cuts = Array.from({ length: small.length - 1 }, (_, i) => i + 1);
    expect(decodeInPieces(small, cuts).events).toEqual([
      { event: 'a', data: '☃' },
      { event: 'b', data: '2' },
    ]);
  });

  it('defaults the event type to "message" and drops an unterminated last event', () => {
    const { events } = decodeInPieces(encoder.encode('data: one\n\nevent: done\ndata: cut'), []);
    expect(events).toEqual([{ event: 'message', data: 'one' }]);
  });

  it('ignores unknown fields, as EventSource does', () => {
    const { events } = decodeInPieces(encoder.encode('foo: bar\nevent: x\ndata: 1\n\n'), []);
    expect(events).toEqual([{ event: 'x', data: '1' }]);
  });
});

describe('readSseStream', () => {
  it('reads a ReadableStream to its end', async () => {
    const bytes = encoder.encode(STREAM);
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        for (let i = 0; i < bytes.length; i += 997) controller.enqueue(bytes.slice(i, i + 997));
        controller.close();
      },
    });
    const events: SseEvent[] = [];
    let reads = 0;
    await readSseStream(body, { onEvent: (e) => events.push(e), onBytes: () => (reads += 1) });
    expect(events).toEqual(EXPECTED);
    expect(reads).toBe(Math.ceil(bytes.length / 997));
  });

  it('rejects when the body fails mid-stream', async () => {
    let sent = false;
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (!sent) {
          sent = true;
          controller.enqueue(encoder.encode('event: a\ndata: 1\n\n'));
        } else controller.error(new TypeError('network error'));
      },
    });
    const events: SseEvent[] = [];
    await expect(readSseStream(body, { onEvent: (e) => events.push(e) })).rejects.toThrow(
      'network error',
    );
    expect(events).toHaveLength(1);
  });
});
