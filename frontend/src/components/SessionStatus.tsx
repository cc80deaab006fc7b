/**
 * A playback session's status line: a notice when the browser cannot play audio, the one-line
 * status (announced politely) and the error, if any.
 */
import type { ReactNode } from 'react';
import { audioSupported } from '../lib/audioContext';

export interface SessionStatusProps {
  /** Prefix of the test ids: `${testId}-status`, `${testId}-error`. */
  testId: string;
  phase: string;
  status: string;
  error: ReactNode;
}

export function SessionStatus({ testId, phase, status, error }: SessionStatusProps) {
  return (
    <>
      {!audioSupported() && (
        <p className="notice" role="alert">
          This browser has no Web Audio support, so streamed audio cannot be played here.
        </p>
      )}
      <p
        className="status"
        role="status"
        aria-live="polite"
        data-testid={`${testId}-status`}
        data-phase={phase}
      >
        {status}
      </p>
      {error && (
        <p className="error" role="alert" data-testid={`${testId}-error`}>
          {error}
        </p>
      )}
    </>
  );
}
