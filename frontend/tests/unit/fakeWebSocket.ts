/** A WebSocket test double: records what the client sends; the test plays the server. */
import type { WebSocketLike } from '../../src/lib/textStream';

export class FakeWebSocket implements WebSocketLike {
  readonly sent: string[] = [];
  closedWith: number | null = null;
  onopen: ((event: Event) => void) | null = null;
  onmessage: ((event: MessageEvent) => void) | null = null;
  onerror: ((event: Event) => void) | null = null;
  onclose: ((event: CloseEvent) => void) | null = null;

  constructor(readonly url: string) {}

  send(data: string): void {
    if (this.closedWith !== null) throw new Error('InvalidStateError: the socket is closed');
    this.sent.push(data);
  }

  close(code = 1005): void {
    this.closedWith ??= code;
  }

  /** What the client sent, parsed. */
  get messages(): unknown[] {
    return this.sent.map((data) => JSON.parse(data) as unknown);
  }

  // --- the server's side ---

  open(): void {
    this.onopen?.(new Event('open'));
  }

  receive(body: unknown): void {
    const data = typeof body === 'string' ? body : JSON.stringify(body);
    this.onmessage?.(new MessageEvent('message', { data }));
  }

  audio(base64: string, contextId: string): void {
    this.receive({ audio: base64, isFinal: false, contextId, context_id: contextId });
  }

  final(contextId: string): void {
    this.receive({ isFinal: true, contextId, context_id: contextId });
  }

  /** The connection ends (from the server, or because it never opened). */
  drop(code: number, reason = ''): void {
    this.closedWith ??= code;
    this.onerror?.(new Event('error'));
    this.onclose?.({ code, reason, wasClean: code === 1000 } as CloseEvent);
  }
}

/** A factory that keeps every socket it made. */
export function fakeSockets(): { factory: (url: string) => FakeWebSocket; made: FakeWebSocket[] } {
  const made: FakeWebSocket[] = [];
  return {
    made,
    factory: (url) => {
      const ws = new FakeWebSocket(url);
      made.push(ws);
      return ws;
    },
  };
}

/** 16-bit little-endian PCM of `samples` samples of `value`, as base64. */
export function pcmBase64(samples: number, value = 1000): string {
  return Buffer.from(new Int16Array(samples).fill(value).buffer).toString('base64');
}
