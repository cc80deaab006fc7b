/**
 * The API key the page sends with every request, when the service asks for one (README,
 * Keys). A person pastes it once; it is kept in the browser's localStorage (so it survives a
 * reload; "Forget" removes it) and sent as `Authorization: Bearer <key>` on every fetch.
 *
 * WebSockets cannot carry headers from a browser, and a key in a URL would end up in logs, so
 * a socket is opened with a single-use token instead: `POST /v1/auth/ws-token` (the key in its
 * header) answers one, which works once and for a minute, passed as `?single_use_token=`.
 */

export const API_KEY_STORAGE_KEY = 'chatterbox.apiKey';
export const SOCKET_TOKEN_PATH = '/v1/auth/ws-token';
export const SOCKET_TOKEN_PARAMETER = 'single_use_token';

/** The part of the Web Storage API used here, so tests can pass a map. */
export type KeyStorage = Pick<Storage, 'getItem' | 'setItem' | 'removeItem'>;

export interface ApiKeyStore {
  /** The saved key, or null when there is none. */
  get(): string | null;
  /** Saves a key (surrounding white space removed); an empty one forgets it. */
  set(key: string): void;
  clear(): void;
}

export function createApiKeyStore(storage: KeyStorage | null): ApiKeyStore {
  // Storage can throw (blocked cookies, private modes): the key then lasts for the page only.
  let memory: string | null = null;
  const store: ApiKeyStore = {
    get() {
      try {
        return storage?.getItem(API_KEY_STORAGE_KEY) || memory;
      } catch {
        return memory;
      }
    },
    set(key) {
      const trimmed = key.trim();
      if (!trimmed) {
        store.clear();
        return;
      }
      memory = trimmed;
      try {
        storage?.setItem(API_KEY_STORAGE_KEY, trimmed);
      } catch {
        // kept in memory only
      }
    },
    clear() {
      memory = null;
      try {
        storage?.removeItem(API_KEY_STORAGE_KEY);
      } catch {
        // nothing stored
      }
    },
  };
  return store;
}

function pageStorage(): KeyStorage | null {
  try {
    return typeof localStorage === 'undefined' ? null : localStorage;
  } catch {
    return null; // access denied
  }
}

export const apiKeyStore: ApiKeyStore = createApiKeyStore(pageStorage());

/** `init` with the key's Authorization header added (unchanged without a key). */
export function withApiKey(init: RequestInit, key: string | null): RequestInit {
  if (!key) return init;
  const headers = new Headers(init.headers);
  headers.set('Authorization', `Bearer ${key}`);
  return { ...init, headers };
}

/** A socket URL with its token in the query (unchanged without a token). */
export function withSocketToken(url: string, token: string | null): string {
  if (!token) return url;
  const separator = url.includes('?') ? '&' : '?';
  return `${url}${separator}${SOCKET_TOKEN_PARAMETER}=${encodeURIComponent(token)}`;
}
