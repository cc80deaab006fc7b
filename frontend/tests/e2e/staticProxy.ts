/**
 * A stand-in for the balancer when it is not there (or E2E_FRONT=proxy): serves the built app
 * and streams API requests through to one worker, unbuffered, as the balancer does.
 */
import { readFile } from 'node:fs/promises';
import { createServer, request as httpRequest, type Server } from 'node:http';
import { extname, join, normalize } from 'node:path';
import { DIST_DIR } from './processes';

const API_PREFIXES = ['/synthesize', '/voices', '/health', '/v1/', '/metrics'];
const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript',
  '.css': 'text/css',
  '.svg': 'image/svg+xml',
  '.map': 'application/json',
  '.json': 'application/json',
};

export interface StaticProxy {
  url: string;
  close: () => Promise<void>;
}

export function startStaticProxy(workerUrl: string): Promise<StaticProxy> {
  const worker = new URL(workerUrl);
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    if (API_PREFIXES.some((prefix) => path.startsWith(prefix))) {
      const upstream = httpRequest(
        {
          host: worker.hostname,
          port: worker.port,
          method: req.method,
          path: req.url,
          headers: { ...req.headers, host: worker.host },
        },
        (reply) => {
          res.writeHead(reply.statusCode ?? 502, reply.headers);
          reply.pipe(res);
        },
      );
      upstream.on('error', () => {
        if (!res.headersSent) res.writeHead(502, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: 'worker unreachable' }));
      });
      // The browser went away: drop the upstream request too (the worker cancels generation).
      res.on('close', () => upstream.destroy());
      req.pipe(upstream);
      return;
    }
    const file = normalize(join(DIST_DIR, path === '/' ? 'index.html' : path));
    if (!file.startsWith(DIST_DIR)) {
      res.writeHead(403).end();
      return;
    }
    readFile(file).then(
      (body) => {
        res.writeHead(200, { 'content-type': TYPES[extname(file)] ?? 'application/octet-stream' });
        res.end(body);
      },
      () => res.writeHead(404).end('not found'),
    );
  });
  return new Promise((resolveProxy) => {
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      resolveProxy({
        url: `http://127.0.0.1:${port}`,
        close: () =>
          new Promise<void>((done) => {
            server.closeAllConnections();
            server.close(() => {
              done();
            });
          }),
      });
    });
  });
}
