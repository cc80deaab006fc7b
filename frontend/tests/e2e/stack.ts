/** A worker with the app in front of it: the balancer when present, else the stand-in proxy. */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import {
  DIST_DIR,
  balancerAvailable,
  startBalancer,
  startFakeWorker,
  startRealWorker,
  type FakeWorkerOptions,
  type Service,
} from './processes';
import { startStaticProxy } from './staticProxy';

export interface Stack {
  worker: Service;
  /** Where the browser goes: the app and the API on one origin. */
  url: string;
  via: 'balancer' | 'proxy';
  close: () => Promise<void>;
}

export function frontKind(): 'balancer' | 'proxy' {
  const forced = process.env.E2E_FRONT;
  if (forced === 'proxy' || forced === 'balancer') return forced;
  return balancerAvailable() ? 'balancer' : 'proxy';
}

async function front(name: string, worker: Service): Promise<Stack> {
  if (!existsSync(join(DIST_DIR, 'index.html'))) {
    throw new Error(`no built app in ${DIST_DIR}: run "npm run build" first`);
  }
  if (frontKind() === 'balancer') {
    const balancer = await startBalancer(`${name}-balancer`, worker);
    return { worker, url: balancer.url, via: 'balancer', close: () => Promise.resolve() };
  }
  const proxy = await startStaticProxy(worker.url);
  return { worker, url: proxy.url, via: 'proxy', close: proxy.close };
}

export async function fakeStack(name: string, options: FakeWorkerOptions = {}): Promise<Stack> {
  return front(name, await startFakeWorker(`${name}-worker`, options));
}

export async function realStack(name: string): Promise<Stack> {
  return front(name, await startRealWorker(`${name}-worker`));
}
