import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';

/** Stands in for the browser's AudioContext: created suspended, as before a user gesture. */
class StubAudioContext {
  static created: StubAudioContext[] = [];
  state: AudioContextState = 'suspended';
  readonly sampleRate: number;
  resume = vi.fn(() => {
    this.state = 'running';
    return Promise.resolve();
  });
  constructor(options?: AudioContextOptions) {
    this.sampleRate = options?.sampleRate ?? 48000;
    StubAudioContext.created.push(this);
  }
}

beforeEach(() => {
  StubAudioContext.created = [];
  vi.resetModules();
  vi.stubGlobal('window', { AudioContext: StubAudioContext });
  vi.stubGlobal('AudioContext', StubAudioContext);
});

afterEach(() => {
  vi.unstubAllGlobals();
});

describe('audioContext', () => {
  it('opens one context at the stream rate and resumes it synchronously in the gesture', async () => {
    const { unlockAudio, getAudioContext, STREAM_SAMPLE_RATE } =
      await import('../../src/lib/audioContext');
    const context = unlockAudio() as unknown as StubAudioContext;
    // resume() must be called before the handler returns: later, the gesture no longer counts.
    expect(context.resume).toHaveBeenCalledTimes(1);
    expect(context.sampleRate).toBe(STREAM_SAMPLE_RATE);
    expect(getAudioContext()).toBe(context);
    unlockAudio();
    expect(StubAudioContext.created).toHaveLength(1);
    expect(context.resume).toHaveBeenCalledTimes(1); // already running
  });

  it('falls back to the device rate when the stream rate is refused', async () => {
    class Picky extends StubAudioContext {
      constructor(options?: AudioContextOptions) {
        if (options?.sampleRate) throw new Error('NotSupportedError');
        super(options);
      }
    }
    vi.stubGlobal('AudioContext', Picky);
    const { getAudioContext } = await import('../../src/lib/audioContext');
    expect(getAudioContext().sampleRate).toBe(48000);
  });
});
