/**
 * The live-text demo in Chromium against a real worker (fast fake engine, which serves the same
 * multi-stream-input WebSocket as the real one) behind the balancer: the text goes out word by
 * word at the chosen pace then flush + close_context, the speech plays gaplessly (checked on the
 * audio clock and in the recorded output), every sentence gets its timings, and Stop interrupts
 * (close_context at once, the worker's stream ends, the queued audio is silenced).
 */
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { splitWords } from '../../src/lib/textStream';
import { checkSchedule, checkTone, scheduledEnd, sineStep } from './audioChecks';
import { launchBrowser, openPage, readRecording, waitForRecordingThrough } from './browser';
import { playbackTrace } from './pageHelpers';
import { ARTIFACTS_DIR, closeQuietly, stopAll } from './processes';
import { fakeStack, type Stack } from './stack';

const RATE = 24000;
const TONE = { amplitude: 0.3, frequency: 220 };
// Each sentence: 2 chunks of 0.25 s, made 50 ms apart (the fake makes a chunk count per segment).
const FAKE = { chunks: 2, delay: 0.05, chunkSeconds: 0.25 };
const SENTENCE_FRAMES = FAKE.chunks * FAKE.chunkSeconds * RATE;
const TEXT =
  'The first sentence is short. Here comes the second one! Is this the third sentence? ' +
  'This is the last one.';
const SENTENCES = [
  'The first sentence is short.',
  'Here comes the second one!',
  'Is this the third sentence?',
  'This is the last one.',
];
const SOCKET_PATH = '/v1/text-to-speech/default/multi-stream-input?output_format=pcm_24000';

let browser: Browser;
let stack: Stack;

beforeAll(async () => {
  [browser, stack] = await Promise.all([launchBrowser(), fakeStack('live', FAKE)]);
});

afterAll(async () => {
  await closeQuietly(browser, stack);
  await stopAll();
});

interface Frame {
  at: number;
  body: Record<string, unknown>;
}

/** What the page sends on its text-to-speech sockets, with the time each frame went out. */
function watchSockets(page: Page): { urls: string[]; sent: Frame[]; received: number[] } {
  const watched = { urls: [] as string[], sent: [] as Frame[], received: [] as number[] };
  page.on('websocket', (ws) => {
    if (!ws.url().includes('/multi-stream-input')) return;
    watched.urls.push(ws.url());
    ws.on('framesent', (frame) => {
      const body = JSON.parse(String(frame.payload)) as Record<string, unknown>;
      watched.sent.push({ at: Date.now(), body });
    });
    ws.on('framereceived', () => watched.received.push(Date.now()));
  });
  return watched;
}

function live(page: Page) {
  const section = page.getByRole('region', { name: 'Live text' });
  return {
    section,
    status: section.getByTestId('live-status'),
    rows: section.getByTestId('sentence-row'),
    start: section.getByRole('button', { name: 'Start' }),
    stop: section.getByRole('button', { name: 'Stop' }),
  };
}

const SECONDS = /^\d+\.\d\d s$/;
const seconds = (text: string | null): number => Number.parseFloat(text ?? 'NaN');

async function activeStreams(): Promise<number> {
  const health = (await (await fetch(`${stack.worker.url}/health`)).json()) as {
    active_streams: number;
  };
  return health.active_streams;
}

describe('live text over the WebSocket (fake engine)', () => {
  it('sends the text word by word at the pace and plays the speech gaplessly, timing each sentence', async () => {
    const { page, context, consoleErrors } = await openPage(browser, stack.url);
    const sockets = watchSockets(page);
    const demo = live(page);
    await page.getByText('Server ready').waitFor();
    await demo.section.getByLabel('Text to send').fill(TEXT);
    await expect(demo.section.getByLabel('Pace').inputValue()).resolves.toBe('15');
    await demo.start.click();
    await demo.status.filter({ hasText: 'Finished.' }).waitFor({ timeout: 30_000 });

    // The messages: open the context, every word with its space at 15 a second, flush, close.
    const words = splitWords(TEXT);
    expect(sockets.urls).toHaveLength(1);
    expect(sockets.urls[0]?.endsWith(SOCKET_PATH)).toBe(true);
    const bodies = sockets.sent.map((f) => f.body);
    const contextId = bodies[0]?.context_id;
    expect(typeof contextId).toBe('string');
    expect(bodies).toEqual([
      { text: ' ', context_id: contextId, voice_settings: {} },
      ...words.map((text) => ({ text, context_id: contextId })),
      { text: '', context_id: contextId, flush: true },
      { context_id: contextId, close_context: true },
    ]);
    const wordTimes = sockets.sent.slice(1, 1 + words.length).map((f) => f.at);
    const spread = ((wordTimes.at(-1) ?? 0) - (wordTimes[0] ?? 0)) / 1000;
    const expected = (words.length - 1) / 15;
    expect(spread).toBeGreaterThan(expected * 0.8);
    expect(spread).toBeLessThan(expected + 1);
    await expect(demo.section.getByTestId('live-words').textContent()).resolves.toBe(
      `${words.length} / ${words.length}`,
    );

    // The speech: every sentence's audio, back to back, and really played.
    const trace = await playbackTrace(page);
    await waitForRecordingThrough(page, scheduledEnd(trace.chunks));
    expect(trace.streamSampleRate).toBe(RATE);
    expect(trace.contextSampleRate).toBe(RATE);
    expect(trace.error).toBeNull();
    const schedule = checkSchedule(trace.chunks);
    expect(schedule.overlaps).toEqual([]);
    expect(schedule.gaps).toEqual([]);
    expect(schedule.underruns).toBe(0);
    expect(schedule.totalFrames).toBe(SENTENCES.length * SENTENCE_FRAMES);
    const tone = checkTone(await readRecording(page), trace.chunks, TONE.amplitude);
    expect(tone.coveredFrames).toBe(schedule.totalFrames);
    expect(tone.windowsChecked).toBeGreaterThan(150);
    expect(tone.silentWindows).toBe(0);
    expect(tone.peak).toBeLessThanOrEqual(TONE.amplitude * 1.01);
    expect(tone.maxStep).toBeLessThanOrEqual(sineStep(TONE.amplitude, TONE.frequency, RATE) * 1.05);

    // The timings: one row per sentence, its first audio playing after its last word was sent.
    await expect(demo.rows.count()).resolves.toBe(SENTENCES.length);
    let lastSent = -1;
    for (const [i, sentence] of SENTENCES.entries()) {
      const row = demo.rows.nth(i);
      await expect(row.locator('td').first().textContent()).resolves.toBe(sentence);
      const sent = await row.getByTestId('sentence-sent').textContent();
      const plays = await row.getByTestId('sentence-plays').textContent();
      const latency = await row.getByTestId('sentence-latency').textContent();
      expect([sent, plays, latency]).toEqual([
        expect.stringMatching(SECONDS),
        expect.stringMatching(SECONDS),
        expect.stringMatching(SECONDS),
      ]);
      expect(seconds(sent)).toBeGreaterThan(lastSent);
      expect(seconds(plays)).toBeGreaterThan(seconds(sent));
      expect(seconds(latency)).toBeCloseTo(seconds(plays) - seconds(sent), 1);
      expect(seconds(latency)).toBeLessThan(1.5);
      lastSent = seconds(sent);
    }
    const ttfa = await demo.section.getByTestId('live-ttfa').textContent();
    expect(ttfa).toMatch(SECONDS);
    expect(seconds(ttfa)).toBeGreaterThan(0);
    expect(seconds(ttfa)).toBeLessThan(2);
    console.log(
      `live text: first audio after ${ttfa ?? ''}, latency per sentence ` +
        (await demo.rows.getByTestId('sentence-latency').allTextContents()).join(', '),
    );

    await demo.section.screenshot({ path: join(ARTIFACTS_DIR, 'live-text-desktop.png') });
    expect(consoleErrors).toEqual([]);
    await context.close();
  });

  it('Stop interrupts at once: close_context without a flush, the stream ends, the queued audio is silenced', async () => {
    const { page, context, consoleErrors } = await openPage(browser, stack.url);
    const sockets = watchSockets(page);
    const demo = live(page);
    await page.getByText('Server ready').waitFor();
    // Short sentences at 15 words a second: 0.5 s of speech per 0.13 s of text, so audio queues.
    const sentences = Array.from({ length: 16 }, (_, i) => `Sentence ${i + 1}.`);
    await demo.section.getByLabel('Text to send').fill(sentences.join(' '));
    await demo.start.click();
    await demo.rows.nth(3).getByTestId('sentence-plays').filter({ hasText: SECONDS }).waitFor();
    await demo.stop.click();
    await demo.status.filter({ hasText: 'Stopped.' }).waitFor();
    const stoppedAt = Date.now();

    // close_context went out at once, after a word and without a flush; nothing after it.
    const bodies = sockets.sent.map((f) => f.body);
    expect(bodies.at(-1)).toEqual({ context_id: bodies[0]?.context_id, close_context: true });
    expect(typeof bodies.at(-2)?.text).toBe('string');
    expect(bodies.some((b) => b.flush === true)).toBe(false);
    const wordsSent = bodies.length - 2;
    expect(wordsSent).toBeGreaterThanOrEqual(8);
    expect(wordsSent).toBeLessThan(sentences.length * 2);
    await expect(demo.section.getByTestId('live-words').textContent()).resolves.toBe(
      `${wordsSent} / ${sentences.length * 2}`,
    );

    // The worker stops generating and frees the stream.
    const deadline = Date.now() + 5000;
    while ((await activeStreams()) > 0 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(await activeStreams()).toBe(0);

    // Playback stopped: no audio scheduled after Stop, and what was queued is never heard.
    const trace = await playbackTrace(page);
    expect(trace.phase).toBe('stopped');
    await page.waitForTimeout(Math.max(0, stoppedAt + 300 - Date.now()));
    const heardUntil = await readRecording(page).then((r) => r.firstFrame + r.samples.length);
    const queuedUntil = scheduledEnd(trace.chunks);
    expect(queuedUntil - heardUntil).toBeGreaterThan(0.5 * RATE); // still queued at Stop
    await waitForRecordingThrough(page, queuedUntil);
    const recording = await readRecording(page);
    let loudest = 0;
    for (let f = heardUntil; f < queuedUntil; f++) {
      loudest = Math.max(loudest, Math.abs(recording.samples[f - recording.firstFrame] ?? 0));
    }
    expect(loudest).toBe(0);
    expect((await playbackTrace(page)).chunks.length).toBe(trace.chunks.length);
    expect(checkSchedule(trace.chunks).gaps).toEqual([]);
    // Sentences whose audio never came have no times.
    await expect(demo.rows.last().getByTestId('sentence-plays').textContent()).resolves.toBe('–');

    // And it starts again.
    await expect(demo.start.isEnabled()).resolves.toBe(true);
    await demo.section.getByLabel('Text to send').fill('Once more.');
    await demo.start.click();
    await demo.status.filter({ hasText: 'Finished.' }).waitFor({ timeout: 30_000 });
    await expect(demo.rows.count()).resolves.toBe(1);
    expect(consoleErrors).toEqual([]);
    await context.close();
  });

  it('fits a phone screen and runs from the keyboard', async () => {
    const { page, context, consoleErrors } = await openPage(browser, stack.url, {
      width: 390,
      height: 844,
    });
    const demo = live(page);
    await page.getByText('Server ready').waitFor();
    const text = demo.section.getByLabel('Text to send');
    await text.fill('A quick check. On a small screen!');
    const pace = demo.section.getByLabel('Pace');
    await pace.focus();
    await page.keyboard.press('End'); // 30 words a second
    await expect(pace.inputValue()).resolves.toBe('30');
    await text.focus();
    await page.keyboard.press('Control+Enter');
    await demo.status.filter({ hasText: 'Finished.' }).waitFor({ timeout: 30_000 });
    await expect(demo.rows.count()).resolves.toBe(2);
    expect(
      await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth),
    ).toBeLessThanOrEqual(0);
    await demo.section.screenshot({ path: join(ARTIFACTS_DIR, 'live-text-phone.png') });
    expect(consoleErrors).toEqual([]);
    await context.close();
  });
});
