/**
 * Debian's Chromium driven by playwright-core (a browser download is not possible here), with
 * audio left unmuted and autoplay allowed, plus a recorder of everything the page plays.
 */
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';

export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

export function launchBrowser(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--autoplay-policy=no-user-gesture-required',
    ],
    // Playwright mutes audio by default; the recorder needs the real output path.
    ignoreDefaultArgs: ['--mute-audio'],
  });
}

export interface Recording {
  sampleRate: number;
  /** Absolute output frame (the audio clock times the sample rate) of `samples[0]`. */
  firstFrame: number;
  /** null where the recorder got no block for that frame. */
  samples: Array<number | null>;
}

/**
 * Runs before the page's own scripts: every AudioContext's `destination` becomes a tap that
 * feeds the real output and an AudioWorklet recorder, which posts what is played along with
 * the audio-clock frame it was played at.
 */
function installRecorder(): void {
  const processor = `
    class E2ERecorder extends AudioWorkletProcessor {
      constructor() { super(); this.buffer = []; this.start = -1; }
      process(inputs) {
        const channel = inputs[0] && inputs[0][0];
        if (this.start < 0) this.start = currentFrame;
        const block = channel ? channel : new Float32Array(128);
        for (let i = 0; i < block.length; i++) this.buffer.push(block[i]);
        if (this.buffer.length >= 4096) {
          this.port.postMessage({ frame: this.start, samples: this.buffer });
          this.buffer = [];
          this.start = -1;
        }
        return true;
      }
    }
    registerProcessor('e2e-recorder', E2ERecorder);`;
  const moduleUrl = URL.createObjectURL(new Blob([processor], { type: 'text/javascript' }));
  const destinationDescriptor = Object.getOwnPropertyDescriptor(
    BaseAudioContext.prototype,
    'destination',
  );
  const destinationOf = (ctx: BaseAudioContext): AudioDestinationNode =>
    destinationDescriptor?.get?.call(ctx) as AudioDestinationNode;
  const state = {
    ready: false,
    sampleRate: 0,
    chunks: [] as Array<{ frame: number; samples: number[] }>,
  };
  (window as unknown as { __e2eRecorder: typeof state }).__e2eRecorder = state;
  const Native = window.AudioContext;

  class RecordingAudioContext extends Native {
    private readonly tap: GainNode;
    private readonly recorderReady: Promise<void>;
    constructor(options?: AudioContextOptions) {
      super(options);
      // The worklet module loads asynchronously: hold the clock still until the recorder is
      // wired, or the first frames the page schedules could play unrecorded.
      void super.suspend();
      const output = destinationOf(this);
      this.tap = this.createGain();
      this.tap.connect(output);
      state.sampleRate = this.sampleRate;
      this.recorderReady = this.audioWorklet.addModule(moduleUrl).then(() => {
        const recorder = new AudioWorkletNode(this, 'e2e-recorder', {
          numberOfInputs: 1,
          numberOfOutputs: 1,
          outputChannelCount: [1],
        });
        recorder.port.onmessage = (event: MessageEvent<{ frame: number; samples: number[] }>) => {
          state.chunks.push(event.data);
        };
        this.tap.connect(recorder);
        recorder.connect(output); // keeps it pulled by the graph; it outputs silence
        state.ready = true;
      });
    }
    override resume(): Promise<void> {
      return this.recorderReady.then(() => super.resume());
    }
    override get destination(): AudioDestinationNode {
      return this.tap as unknown as AudioDestinationNode;
    }
  }
  window.AudioContext = RecordingAudioContext;
}

export interface PageProbe {
  page: Page;
  context: BrowserContext;
  consoleErrors: string[];
}

export async function openPage(
  browser: Browser,
  url: string,
  viewport = { width: 1280, height: 900 },
): Promise<PageProbe> {
  const context = await browser.newContext({ viewport, acceptDownloads: true });
  await context.addInitScript(installRecorder);
  const page = await context.newPage();
  const consoleErrors: string[] = [];
  page.on('console', (message) => {
    if (message.type() === 'error') consoleErrors.push(message.text());
  });
  page.on('pageerror', (error) => consoleErrors.push(`page error: ${error.message}`));
  await page.goto(url);
  return { page, context, consoleErrors };
}

/**
 * Waits until the recorder has posted audio up to `frame` (the recorder posts in blocks, so
 * the tail of what was played arrives a little after it was played).
 */
export async function waitForRecordingThrough(page: Page, frame: number): Promise<void> {
  await page.waitForFunction((end) => {
    const { chunks } = (
      window as unknown as {
        __e2eRecorder: { chunks: Array<{ frame: number; samples: number[] }> };
      }
    ).__e2eRecorder;
    const last = chunks[chunks.length - 1];
    return last !== undefined && last.frame + last.samples.length >= end;
  }, frame);
}

/** Everything recorded so far, each block placed at the audio-clock frame it was played at. */
export async function readRecording(page: Page): Promise<Recording> {
  return page.evaluate(() => {
    const state = (
      window as unknown as {
        __e2eRecorder: { sampleRate: number; chunks: Array<{ frame: number; samples: number[] }> };
      }
    ).__e2eRecorder;
    const firstFrame = state.chunks[0]?.frame ?? 0;
    const samples: Array<number | null> = [];
    for (const chunk of state.chunks) {
      const offset = chunk.frame - firstFrame;
      for (let i = 0; i < chunk.samples.length; i++) samples[offset + i] = chunk.samples[i] ?? 0;
    }
    for (let i = 0; i < samples.length; i++) samples[i] ??= null;
    return { sampleRate: state.sampleRate, firstFrame, samples };
  });
}
