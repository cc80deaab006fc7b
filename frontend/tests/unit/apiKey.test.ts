import { describe, expect, it, vi } from 'vitest';
import { createChatterboxAPI } from '../../src/lib/api';
import {
  API_KEY_STORAGE_KEY,
  createApiKeyStore,
  withApiKey,
  withSocketToken,
  type KeyStorage,
} from '../../src/lib/apiKey';
import { ChatterboxError } from '../../src/lib/errors';
import { LiveTextSession } from '../../src/lib/liveTextSession';
import { FakeAudioContext } from './fakeWebAudio';
import { fakeSockets } from './fakeWebSocket';

class RunningContext extends FakeAudioContext {
  state: 'suspended' | 'running' | 'closed' = 'running';
  resume(): Promise<void> {
    return Promise.resolve();
  }
}

function mapStorage(): KeyStorage & { items: Map<string, string> } {
  const items = new Map<string, string>();
  return {
    items,
    getItem: (k) => items.get(k) ?? null,
    setItem: (k, v) => {
      items.set(k, v);
    },
    removeItem: (k) => {
      items.delete(k);
    },
  };
}

function json(status: number, body: unknown): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { 'content-type': 'application/json' },
  });
}

function authorizationOf(init: RequestInit | undefined): string | null {
  return new Headers(init?.headers).get('authorization');
}

describe('the API key store', () => {
  it('keeps a pasted key (trimmed) in storage, and forgets it', () => {
    const storage = mapStorage();
    const store = createApiKeyStore(storage);
    expect(store.get()).toBeNull();
    store.set('  sk-123  ');
    expect(store.get()).toBe('sk-123');
    expect(storage.items.get(API_KEY_STORAGE_KEY)).toBe('sk-123');
    expect(createApiKeyStore(storage).get()).toBe('sk-123'); // a reload finds it
    store.set('   ');
    expect(store.get()).toBeNull();
    store.set('sk-456');
    store.clear();
    expect(store.get()).toBeNull();
    expect(storage.items.size).toBe(0);
  });

  it('keeps the key for the page when storage is refused', () => {
    const refusing: KeyStorage = {
      getItem: () => {
        throw new DOMException('denied', 'SecurityError');
      },
      setItem: () => {
        throw new DOMException('denied', 'SecurityError');
      },
      removeItem: () => {
        throw new DOMException('denied', 'SecurityError');
      },
    };
    const store = createApiKeyStore(refusing);
    store.set('sk-1');
    expect(store.get()).toBe('sk-1');
    store.clear();
    expect(store.get()).toBeNull();
    expect(createApiKeyStore(null).get()).toBeNull();
  });

  it('adds the header and the token only when there is one', () => {
    const init = withApiKey({ method: 'POST', headers: { Accept: 'text/event-stream' } }, 'k');
    expect(authorizationOf(init)).toBe('Bearer k');
    expect(new Headers(init.headers).get('accept')).toBe('text/event-stream');
    const plain = { method: 'GET' };
    expect(withApiKey(plain, null)).toBe(plain);
    expect(withSocketToken('ws://h/ws/tts', 'a b')).toBe('ws://h/ws/tts?single_use_token=a%20b');
    expect(withSocketToken('ws://h/x?output_format=pcm_24000', 't')).toBe(
      'ws://h/x?output_format=pcm_24000&single_use_token=t',
    );
    expect(withSocketToken('ws://h/x', null)).toBe('ws://h/x');
  });
});

describe('chatterboxAPI with a key', () => {
  it('sends the current key on every fetch, and none without one', async () => {
    let key: string | null = 'sk-live';
    const fetch = vi.fn<typeof globalThis.fetch>(() =>
      Promise.resolve(json(200, { voices: [], status: 'ready' })),
    );
    const api = createChatterboxAPI({ fetch, apiKey: () => key });
    await api.listVoices();
    await api.health();
    await api.deleteVoice('v1').catch(() => undefined);
    for (const [, init] of fetch.mock.calls) expect(authorizationOf(init)).toBe('Bearer sk-live');
    key = null;
    await api.listVoices();
    expect(authorizationOf(fetch.mock.calls.at(-1)?.[1])).toBeNull();
  });

  it('gets a socket token with the key; none without a key or from a server without keys', async () => {
    const fetch = vi.fn<typeof globalThis.fetch>(() =>
      Promise.resolve(json(200, { token: 'tok-1', expires_in: 60 })),
    );
    const api = createChatterboxAPI({ fetch, apiKey: () => 'sk-live' });
    await expect(api.socketToken()).resolves.toBe('tok-1');
    const [url, init] = fetch.mock.calls[0] ?? [];
    expect(url).toBe('/v1/auth/ws-token');
    expect(init?.method).toBe('POST');
    expect(authorizationOf(init)).toBe('Bearer sk-live');

    const keyless = createChatterboxAPI({ fetch, apiKey: () => null });
    await expect(keyless.socketToken()).resolves.toBeNull();
    expect(fetch).toHaveBeenCalledTimes(1);

    const open = createChatterboxAPI({
      fetch: () => Promise.resolve(new Response('Not Found', { status: 404 })),
      apiKey: () => 'sk-live',
    });
    await expect(open.socketToken()).resolves.toBeNull();
  });

  it('explains a missing or refused key, a forbidden action and a busy key', async () => {
    const answering = (status: number, error: string) =>
      createChatterboxAPI({
        fetch: () => Promise.resolve(json(status, { error })),
        apiKey: () => 'sk-x',
      });
    await expect(answering(401, 'an API key is required').listVoices()).rejects.toMatchObject({
      kind: 'auth',
      status: 401,
      message: expect.stringMatching(/needs an API key/) as unknown,
    });
    await expect(answering(401, 'invalid API key').socketToken()).rejects.toMatchObject({
      kind: 'auth',
      message: expect.stringMatching(/did not accept that API key/) as unknown,
    });
    const forbidden = answering(403, "the key 'web' (user) may not do this: it needs an admin key");
    await expect(forbidden.deleteVoice('v')).rejects.toMatchObject({
      kind: 'auth',
      status: 403,
      message: "The key 'web' (user) may not do this: it needs an admin key.",
    });
    await expect(answering(429, 'limit').synthesize({ text: 'Hi.' })).rejects.toMatchObject({
      kind: 'busy',
      status: 429,
      message: expect.stringMatching(/^Your API key already has/) as unknown,
    });
  });
});

describe('LiveTextSession with socket tokens', () => {
  function session(socketToken: () => Promise<string | null>) {
    const sockets = fakeSockets();
    const ctx = new RunningContext(24000);
    const views: string[] = [];
    const live = new LiveTextSession({
      onView: (view) => views.push(view.error ?? view.phase),
      audio: { supported: () => true, unlock: () => ctx, current: () => ctx },
      socket: sockets.factory,
      url: (voice) =>
        `ws://test/v1/text-to-speech/${voice}/multi-stream-input?output_format=pcm_24000`,
      socketToken,
    });
    return { live, sockets, views };
  }

  it('opens the socket with a fresh token', async () => {
    const { live, sockets } = session(() => Promise.resolve('tok-9'));
    void live.start({ text: 'Hello there.', wordsPerSecond: 10, voiceId: 'alloy' });
    expect(sockets.made).toHaveLength(0); // not before the token came
    await vi.waitFor(() => {
      expect(sockets.made).toHaveLength(1);
    });
    expect(sockets.made[0]?.url).toBe(
      'ws://test/v1/text-to-speech/alloy/multi-stream-input?output_format=pcm_24000&single_use_token=tok-9',
    );
    live.halt();
  });

  it('reports a token that could not be had, without opening a socket', async () => {
    const refused = new ChatterboxError('auth', 'This server needs an API key.', { status: 401 });
    const { live, sockets } = session(() => Promise.reject(refused));
    const result = await live.start({ text: 'Hello there.', wordsPerSecond: 10, voiceId: 'a' });
    expect(result).toMatchObject({ outcome: 'error', error: refused });
    expect(live.view).toMatchObject({ phase: 'error', error: 'This server needs an API key.' });
    expect(sockets.made).toHaveLength(0);
  });

  it('does not open a socket for a run stopped while the token was on its way', async () => {
    let give: (token: string) => void = () => undefined;
    const { live, sockets } = session(
      () =>
        new Promise((resolve) => {
          give = resolve;
        }),
    );
    const result = live.start({ text: 'Hello there.', wordsPerSecond: 10, voiceId: 'a' });
    live.stop();
    give('tok-late');
    await expect(result).resolves.toMatchObject({ outcome: 'stopped' });
    await Promise.resolve();
    expect(sockets.made).toHaveLength(0);
  });
});
