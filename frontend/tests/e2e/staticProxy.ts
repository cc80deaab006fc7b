/**
 * A stand-in for the balancer when it is not there (or E2E_FRONT=proxy): serves the built app
 * and streams API requests through to one worker, unbuffered, as the balancer does, and its
 * WebSockets (`/v1/text-to-speech/.../multi-stream-input`) byte for byte.
 */
import { readFile } from 'node:fs/promises';
import { createServer, request as httpRequest, type Server } from 'node:http';
import { connect, type Socket } from 'node:net';
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
  // WebSocket upgrades: replay the handshake to the worker, then pipe both ways.
  const tunnels = new Set<Socket>();
  server.on('upgrade', (req, client: Socket, head: Buffer) => {
    if (!(req.url ?? '').startsWith('/v1/')) {
      client.destroy();
      return;
    }
    const upstream = connect(Number(worker.port), worker.hostname, () => {
      const lines = [`${req.method ?? 'GET'} ${req.url ?? '/'} HTTP/1.1`];
      for (let i = 0; i + 1 < req.rawHeaders.length; i += 2) {
        const name = req.rawHeaders[i] ?? '';
        lines.push(
          `${name}: ${name.toLowerCase() === 'host' ? worker.host : (req.rawHeaders[i + 1] ?? '')}`,
        );
      }
      upstream.write(`${lines.join('\r\n')}\r\n\r\n`);
      if (head.length > 0) upstream.write(head);
      upstream.pipe(client);
      client.pipe(upstream);
    });
    for (const end of [client, upstream]) {
      tunnels.add(end);
      end.on('error', () => {
        client.destroy();
        upstream.destroy();
      });
      end.on('close', () => {
        tunnels.delete(end);
        client.destroy();
        upstream.destroy();
      });
    }
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
            for (const tunnel of tunnels) tunnel.destroy();
            server.close(() => {
              done();
            });
          }),
      });
    });
  });
}
