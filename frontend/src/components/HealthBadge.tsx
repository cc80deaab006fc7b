/** The service's state in the header: ready, model loading, or unreachable. */
import { useEffect, useState } from 'react';
import type { ChatterboxAPI } from '../lib/api';

type Health = 'checking' | 'ready' | 'degraded' | 'loading' | 'down' | 'unreachable';

const LABELS: Record<Health, string> = {
  checking: 'Checking server…',
  ready: 'Server ready',
  degraded: 'Server ready (some workers down)',
  loading: 'Model loading…',
  down: 'No worker ready',
  unreachable: 'Server unreachable',
};

/** A worker says ready/loading/failed; the balancer says ok/degraded/unavailable. */
function classify(status: string): Health {
  switch (status) {
    case 'ready':
    case 'ok':
      return 'ready';
    case 'degraded':
      return 'degraded';
    case 'loading':
      return 'loading';
    default:
      return 'down';
  }
}

const POLL_MS = 10_000;

export function HealthBadge({ api }: { api: ChatterboxAPI }) {
  const [health, setHealth] = useState<Health>('checking');

  useEffect(() => {
    let alive = true;
    const check = async (): Promise<void> => {
      let next: Health;
      try {
        const info = await api.health();
        next = classify(info.status);
      } catch {
        next = 'unreachable';
      }
      if (alive) setHealth(next);
    };
    void check();
    const timer = setInterval(() => void check(), POLL_MS);
    return () => {
      alive = false;
      clearInterval(timer);
    };
  }, [api]);

  return (
    <span className={`badge badge-health badge-${health}`} role="status" aria-live="polite">
      <span className="dot" aria-hidden="true" />
      {LABELS[health]}
    </span>
  );
}
