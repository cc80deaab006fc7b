/**
 * Server-sent events over a fetch body (a browser `EventSource` cannot POST a form).
 * Parsing is eventsource-parser's; this module only turns bytes into text safely and
 * reads a stream to its end.
 */
import { createParser, type EventSourceParser } from 'eventsource-parser';

export interface SseEvent {
  /** The `event:` field; "message" when the server sent none, as in `EventSource`. */
  event: string;
  data: string;
  id?: string;
}

export interface SseHandlers {
  onEvent: (event: SseEvent) => void;
  /** `:` comment lines: the server's keep-alive pings. */
  onComment?: (comment: string) => void;
}

// One audio chunk of the largest size (200 tokens, ~8 s) is ~0.5 MB of base64; allow plenty.
export const MAX_EVENT_CHARS = 32 * 1024 * 1024;

/** Feeds raw bytes, split anywhere (even inside a UTF-8 sequence or a line ending). */
export class SseDecoder {
  private readonly text = new TextDecoder('utf-8');
  private readonly parser: EventSourceParser;
  private failure: Error | null = null;
  private endsWithCr = false;

  constructor(handlers: SseHandlers) {
    this.parser = createParser({
      onEvent: (message) => {
        const event: SseEvent = { event: message.event ?? 'message', data: message.data };
        if (message.id !== undefined) event.id = message.id;
        handlers.onEvent(event);
      },
      onComment: (comment) => handlers.onComment?.(comment),
      // Unknown fields are ignored, as `EventSource` does; only an oversized event is fatal.
      onError: (error) => {
        if (error.type === 'max-buffer-size-exceeded') this.failure = error;
      },
      maxBufferSize: MAX_EVENT_CHARS,
    });
  }

  push(bytes: Uint8Array): void {
    this.feed(this.text.decode(bytes, { stream: true }));
  }

  private throwIfFailed(): void {
    if (this.failure) throw this.failure;
  }

  /** End of stream: as in `EventSource`, an event without its closing blank line is dropped. */
  end(): void {
    this.feed(this.text.decode());
    // A lone CR could be the first half of CRLF, so the parser waits for the next character;
    // at the end of the stream it is a complete line ending.
    if (this.endsWithCr) this.feed('\n');
    this.parser.reset();
  }

  private feed(text: string): void {
    this.throwIfFailed();
    if (!text) return;
    this.endsWithCr = text.endsWith('\r');
    this.parser.feed(text);
    this.throwIfFailed();
  }
}

/** Reads `body` to its end, calling the handlers for each event; rejects if reading fails. */
export async function readSseStream(
  body: ReadableStream<Uint8Array>,
  handlers: SseHandlers & { onBytes?: () => void },
): Promise<void> {
  const decoder = new SseDecoder(handlers);
  const reader = body.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      handlers.onBytes?.();
      decoder.push(value);
    }
    decoder.end();
  } finally {
    reader.releaseLock();
  }
}
