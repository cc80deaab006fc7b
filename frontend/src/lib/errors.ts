/** Failures of API calls, each with a message a person can act on. */
import { fieldLabel } from './params';

export type ErrorKind =
  | 'invalid' // 422: a field's value (the field is named)
  | 'busy' // 503: every slot taken; 429: every stream the key may run
  | 'auth' // 401: no API key, or one the server does not know; 403: the key may not do that
  | 'loading' // 503: the model is not ready yet
  | 'too-large' // 413
  | 'not-found' // 404
  | 'network' // no response at all
  | 'timeout' // the server went silent
  | 'stream' // an `error` event, or the stream ended early
  | 'server'; // anything else

export class ChatterboxError extends Error {
  readonly kind: ErrorKind;
  readonly status: number | undefined;
  readonly field: string | undefined;
  /** Seconds, from Retry-After. */
  readonly retryAfter: number | undefined;

  constructor(
    kind: ErrorKind,
    message: string,
    extra: { status?: number; field?: string; retryAfter?: number } = {},
  ) {
    super(message);
    this.name = 'ChatterboxError';
    this.kind = kind;
    this.status = extra.status;
    this.field = extra.field;
    this.retryAfter = extra.retryAfter;
  }
}

interface ErrorBody {
  error?: unknown;
  field?: unknown;
  allowed?: unknown;
}

function sentence(text: string): string {
  const trimmed = text.trim();
  if (!trimmed) return trimmed;
  const first = trimmed.charAt(0).toUpperCase() + trimmed.slice(1);
  return /[.!?]$/.test(first) ? first : `${first}.`;
}

function seconds(n: number): string {
  return n === 1 ? '1 second' : `${n} seconds`;
}

const AUDIO_FIELDS = new Set(['audio_prompt', 'audio']);
// Their `allowed` is a list of codes, which the server's message already gives.
const LANGUAGE_FIELDS = new Set(['language', 'language_code']);

/** The plain-words message for a 422 body naming a field. */
export function fieldMessage(field: string, error: string, allowed?: string): string {
  const label = fieldLabel(field);
  if (allowed && !AUDIO_FIELDS.has(field) && !LANGUAGE_FIELDS.has(field) && field !== 'text') {
    const article = allowed.startsWith('integer') ? 'an' : 'a';
    return `${label} must be ${article} ${allowed}.`;
  }
  if (AUDIO_FIELDS.has(field)) return `That audio file can't be used: ${error.trim()}.`;
  return sentence(error);
}

/** A ChatterboxError for a non-OK response (reads the JSON body when there is one). */
export async function errorFromResponse(response: Response): Promise<ChatterboxError> {
  let body: ErrorBody = {};
  try {
    const parsed: unknown = await response.json();
    if (parsed && typeof parsed === 'object') body = parsed;
  } catch {
    // not JSON (a proxy's HTML page, an empty body): the status says enough
  }
  const status = response.status;
  const detail = typeof body.error === 'string' ? body.error : '';
  const field = typeof body.field === 'string' ? body.field : undefined;
  const allowed = typeof body.allowed === 'string' ? body.allowed : undefined;
  const retryHeader = Number(response.headers.get('retry-after'));
  const retryAfter = Number.isFinite(retryHeader) && retryHeader > 0 ? retryHeader : undefined;
  const extra = {
    status,
    ...(field === undefined ? {} : { field }),
    ...(retryAfter === undefined ? {} : { retryAfter }),
  };
  const later = retryAfter ? `in ${seconds(retryAfter)}` : 'in a few seconds';
  if (status === 503 && /load/i.test(detail)) {
    const failed = /failed/i.test(detail);
    return new ChatterboxError(
      'loading',
      failed
        ? 'The speech model failed to load on the server. Please tell the service operator.'
        : `The speech model is still loading, try again ${later}.`,
      extra,
    );
  }
  if (status === 401) {
    return new ChatterboxError(
      'auth',
      /invalid/i.test(detail)
        ? 'The server did not accept that API key. Check the key at the top of the page.'
        : 'This server needs an API key: paste yours at the top of the page.',
      extra,
    );
  }
  if (status === 403) {
    return new ChatterboxError('auth', sentence(detail || 'Your API key may not do this'), extra);
  }
  if (status === 429) {
    return new ChatterboxError(
      'busy',
      `Your API key already has as many streams running as it may, try again ${later}.`,
      extra,
    );
  }
  if (status === 503) {
    return new ChatterboxError('busy', `The server is busy, try again ${later}.`, extra);
  }
  if ((status === 422 || status === 400) && field) {
    return new ChatterboxError('invalid', fieldMessage(field, detail, allowed), extra);
  }
  if (status === 413) {
    const what = field && AUDIO_FIELDS.has(field) ? 'That audio file is' : 'The request is';
    const limit = allowed ? ` (${allowed})` : '';
    return new ChatterboxError('too-large', `${what} too large${limit}.`, extra);
  }
  if (status === 404) {
    return new ChatterboxError('not-found', sentence(detail || 'Not found'), extra);
  }
  if (status >= 400 && status < 500) {
    return new ChatterboxError(
      'invalid',
      sentence(detail || `The request was refused (HTTP ${status})`),
      extra,
    );
  }
  const reason = detail ? `: ${detail}` : ` (HTTP ${status})`;
  return new ChatterboxError('server', `Something went wrong on the server${reason}.`, extra);
}

export function networkError(): ChatterboxError {
  return new ChatterboxError(
    'network',
    'Could not reach the server. Check that it is running and try again.',
  );
}

export function isAbort(error: unknown): boolean {
  return error instanceof DOMException
    ? error.name === 'AbortError'
    : error instanceof Error && error.name === 'AbortError';
}

/** Any thrown value as a ChatterboxError (fetch's TypeError is a network failure). */
export function asChatterboxError(error: unknown): ChatterboxError {
  if (error instanceof ChatterboxError) return error;
  if (error instanceof TypeError) return networkError();
  const message = error instanceof Error ? error.message : String(error);
  return new ChatterboxError('server', `Something went wrong: ${message}`);
}
