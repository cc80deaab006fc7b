/**
 * The service's state in the header: ready, model loading, or unreachable. Each answer is
 * also handed to `onHealth` (the languages the model speaks are in it).
 */
import { useEffect, useRef, useState } from 'react';
import type { ChatterboxAPI, HealthInfo } from '../lib/api';

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

export function HealthBadge({
  api,
  onHealth,
}: {
  api: ChatterboxAPI;
  onHealth?: (info: HealthInfo) => void;
}) {
  const [health, setHealth] = useState<Health>('checking');
  // The latest callback, without restarting the polling when it changes.
  const onHealthRef = useRef(onHealth);
  useEffect(() => {
    onHealthRef.current = onHealth;
  }, [onHealth]);

  useEffect(() => {
    let alive = true;
    const check = async (): Promise<void> => {
      let next: Health;
      try {
        const info = await api.health();
        next = classify(info.status);
        if (alive) onHealthRef.current?.(info);
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
