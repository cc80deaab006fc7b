/**
 * One AudioContext for the page (browsers cap how many may exist), opened at the stream's rate
 * so chunks need no resampling. Browsers create it `suspended` until a user gesture: call
 * `unlockAudio` synchronously inside the click or key handler that starts playback.
 */

export const STREAM_SAMPLE_RATE = 24000;

let shared: AudioContext | null = null;

function open(): AudioContext {
  try {
    return new AudioContext({ sampleRate: STREAM_SAMPLE_RATE, latencyHint: 'interactive' });
  } catch {
    // A browser that refuses this rate: the player resamples to the device's rate instead.
    return new AudioContext({ latencyHint: 'interactive' });
  }
}

export function audioSupported(): boolean {
  return typeof window !== 'undefined' && typeof window.AudioContext === 'function';
}

export function getAudioContext(): AudioContext {
  if (!shared || shared.state === 'closed') shared = open();
  return shared;
}

/** Starts resuming the context; must run inside a user gesture to be allowed. */
export function unlockAudio(): AudioContext {
  const context = getAudioContext();
  if (context.state === 'suspended') {
    context.resume().catch(() => {
      // Still blocked: the player offers an "Enable sound" button (a fresh gesture).
    });
  }
  return context;
}
