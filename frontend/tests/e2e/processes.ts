/**
 * Backend processes for the browser tests: fake-engine workers, the real random-weight worker
 * and the balancer, each on a free loopback port, with logs kept as test artifacts. Everything
 * started here is killed by `stopAll()` (and on exit), whether the tests passed or not.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, existsSync, mkdirSync, mkdtempSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const FRONTEND_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const REPO_DIR = resolve(FRONTEND_DIR, '..');
export const DIST_DIR = join(FRONTEND_DIR, 'dist');
export const ARTIFACTS_DIR = join(FRONTEND_DIR, 'test-artifacts');
export const PYTHON = process.env.CHATTERBOX_PYTHON ?? join(REPO_DIR, '.venv', 'bin', 'python');

const LOOPBACK = '127.0.0.1';
const running = new Set<ChildProcess>();

export function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, LOOPBACK, () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => {
        resolvePort(port);
      });
    });
  });
}

export interface Service {
  name: string;
  url: string;
  process: ChildProcess;
}

function start(name: string, args: string[]): ChildProcess {
  mkdirSync(join(ARTIFACTS_DIR, 'logs'), { recursive: true });
  const log = createWriteStream(join(ARTIFACTS_DIR, 'logs', `${name}.log`));
  // Its own process group, so stopping it also stops anything it started.
  const child = spawn(PYTHON, args, {
    cwd: REPO_DIR,
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, PYTHONUNBUFFERED: '1' },
  });
  child.stdout.pipe(log);
  child.stderr.pipe(log);
  running.add(child);
  child.on('exit', () => running.delete(child));
  return child;
}

function signalGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    // already gone
  }
}

/** SIGTERM to every process started here, then SIGKILL to whatever is left after `graceMs`. */
export async function stopAll(graceMs = 5000): Promise<void> {
  const children = [...running];
  for (const child of children) signalGroup(child, 'SIGTERM');
  const exited = children.map(
    (child) =>
      new Promise<void>((done) => {
        if (child.exitCode !== null || child.signalCode !== null) done();
        else
          child.once('exit', () => {
            done();
          });
      }),
  );
  const timeout = new Promise<'timeout'>((done) => {
    setTimeout(() => {
      done('timeout');
    }, graceMs);
  });
  if ((await Promise.race([Promise.all(exited), timeout])) === 'timeout') {
    for (const child of children) signalGroup(child, 'SIGKILL');
    await Promise.all(exited);
  }
}

// Last resort if the runner dies without running afterAll hooks.
process.on('exit', () => {
  for (const child of running) signalGroup(child, 'SIGKILL');
});

export async function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined>,
  timeoutMs: number,
  process?: ChildProcess,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (process && (process.exitCode !== null || process.signalCode !== null)) {
      throw new Error(`${what}: the process exited (${process.exitCode ?? process.signalCode})`);
    }
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch {
      // not up yet
    }
    if (Date.now() > deadline) throw new Error(`${what}: not ready after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function healthStatus(url: string): Promise<string | undefined> {
  const response = await fetch(`${url}/health`);
  const body = (await response.json()) as { status?: string };
  return body.status;
}

export interface FakeWorkerOptions {
  chunks?: number;
  delay?: number;
  chunkSeconds?: number;
  failAfter?: number;
  maxStreams?: number;
  maxQueue?: number;
}

export async function startFakeWorker(
  name: string,
  options: FakeWorkerOptions = {},
): Promise<Service> {
  const port = await freePort();
  const args = ['-m', 'tests.fake_worker', '--host', LOOPBACK, '--port', String(port)];
  const flags: Array<[string, number | undefined]> = [
    ['--chunks', options.chunks],
    ['--delay', options.delay],
    ['--chunk-seconds', options.chunkSeconds],
    ['--fail-after', options.failAfter],
    ['--max-streams', options.maxStreams],
    ['--max-queue', options.maxQueue],
  ];
  for (const [flag, value] of flags) if (value !== undefined) args.push(flag, String(value));
  args.push('--voices-dir', mkdtempSync(join(tmpdir(), 'e2e-voices-')));
  const child = start(name, args);
  const url = `http://${LOOPBACK}:${port}`;
  await waitFor(
    name,
    async () => ((await healthStatus(url)) === 'ready' ? true : undefined),
    60_000,
    child,
  );
  return { name, url, process: child };
}

/** The real engine over a full-size random-weight checkpoint (noise; ~3 GB RAM, 10-20 s to load). */
export async function startRealWorker(name: string): Promise<Service> {
  const port = await freePort();
  const child = start(name, [
    '-m',
    'server',
    '--random-weights',
    '--host',
    LOOPBACK,
    '--port',
    String(port),
    '--max-streams',
    '1',
    '--voices-dir',
    mkdtempSync(join(tmpdir(), 'e2e-voices-')),
  ]);
  const url = `http://${LOOPBACK}:${port}`;
  // Building the random checkpoint on first use adds about a minute.
  await waitFor(
    name,
    async () => ((await healthStatus(url)) === 'ready' ? true : undefined),
    240_000,
    child,
  );
  return { name, url, process: child };
}

export function balancerAvailable(): boolean {
  return existsSync(join(REPO_DIR, 'balancer', '__main__.py'));
}

/** The balancer in front of one worker, serving the built app at `/`. */
export async function startBalancer(name: string, worker: Service): Promise<Service> {
  const port = await freePort();
  const child = start(name, [
    '-m',
    'balancer',
    '--workers',
    worker.url,
    '--host',
    LOOPBACK,
    '--port',
    String(port),
    '--static-dir',
    DIST_DIR,
    '--health-interval',
    '0.5',
    '--log-level',
    'warning',
  ]);
  const url = `http://${LOOPBACK}:${port}`;
  await waitFor(
    name,
    async () => {
      const health = await fetch(`${url}/health`);
      const page = await fetch(`${url}/`);
      return health.ok && page.ok && (await page.text()).includes('id="root"') ? true : undefined;
    },
    30_000,
    child,
  );
  return { name, url, process: child };
}

/** For afterAll hooks: what beforeAll may not have got to create. */
export async function closeQuietly(
  ...things: Array<{ close: () => Promise<void> } | undefined>
): Promise<void> {
  await Promise.allSettled(things.map((thing) => (thing ? thing.close() : Promise.resolve())));
}
