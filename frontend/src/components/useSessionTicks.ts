/**
 * Follows a playback session's audio clock while something can still change (progress,
 * playing/buffering/ended), and silences the session when the component goes away.
 */
import { useEffect } from 'react';

const POLL_MS = 100;

export interface TickingSession {
  tick: () => void;
  halt: () => void;
}

export function useSessionTicks(session: TickingSession, active: boolean): void {
  useEffect(() => {
    if (!active) return;
    const timer = setInterval(() => {
      session.tick();
    }, POLL_MS);
    return () => {
      clearInterval(timer);
    };
  }, [active, session]);

  useEffect(
    () => () => {
      session.halt();
    },
    [session],
  );
}
