/**
 * A read-only record of what the player scheduled, published on `window` so a browser test
 * (or a curious developer in the console) can check the audio was laid out contiguously.
 */
import type { Placement } from './scheduler';

export interface PlaybackTrace {
  contextSampleRate: number;
  contextState: string;
  streamSampleRate: number | null;
  chunks: Array<Placement & { chunkId: number; samples: number }>;
  underruns: number;
  phase: string;
  playback: string;
  error: string | null;
}

declare global {
  interface Window {
    __chatterboxPlayback?: PlaybackTrace;
  }
}

export function publishTrace(trace: PlaybackTrace): void {
  if (typeof window !== 'undefined') window.__chatterboxPlayback = trace;
}
