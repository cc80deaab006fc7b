import { describe, expect, it } from 'vitest';
import { asChatterboxError, errorFromResponse, fieldMessage } from '../../src/lib/errors';

function json(status: number, body: unknown, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body), { status, headers });
}

describe('errors', () => {
  it('turns field errors into sentences', () => {
    expect(fieldMessage('top_k', 'top_k is x', 'integer in [0, 10000]')).toBe(
      'Top k must be an integer in [0, 10000].',
    );
    expect(fieldMessage('voice', "unknown voice 'bob'")).toBe("Unknown voice 'bob'.");
    expect(
      fieldMessage(
        'text',
        'text has 5000 characters; at most 4096 are allowed',
        '1-4096 characters',
      ),
    ).toBe('Text has 5000 characters; at most 4096 are allowed.');
    // A language's `allowed` is the model's list: the server's sentence says it all.
    expect(
      fieldMessage(
        'language',
        "language 'fr' is not spoken here; the loaded model speaks en",
        'en',
      ),
    ).toBe("Language 'fr' is not spoken here; the loaded model speaks en.");
  });

  it('says when the model failed to load', async () => {
    const e = await errorFromResponse(json(503, { error: 'the model failed to load: OSError: x' }));
    expect(e.kind).toBe('loading');
    expect(e.message).toMatch(/failed to load/);
  });

  it('copes with a body that is not JSON', async () => {
    const e = await errorFromResponse(new Response('<html>bad gateway</html>', { status: 502 }));
    expect(e.kind).toBe('server');
    expect(e.message).toBe('Something went wrong on the server (HTTP 502).');
    const busy = await errorFromResponse(new Response('', { status: 503 }));
    expect(busy.message).toBe('The server is busy, try again in a few seconds.');
  });

  it('maps 404 and 400 without a field', async () => {
    expect((await errorFromResponse(json(404, { error: "no voice 'x'" }))).message).toBe(
      "No voice 'x'.",
    );
    expect((await errorFromResponse(json(400, { error: 'could not read the form' }))).message).toBe(
      'Could not read the form.',
    );
  });

  it('wraps anything thrown', () => {
    expect(asChatterboxError(new TypeError('Failed to fetch')).kind).toBe('network');
    expect(asChatterboxError('weird').message).toBe('Something went wrong: weird');
  });
});
