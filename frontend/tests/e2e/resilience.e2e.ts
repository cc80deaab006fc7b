/**
 * When things go wrong: generation slower than playback (buffering, then resuming without a
 * click), a full server (503), and a stream that fails partway (an `error` event).
 */
import { join } from 'node:path';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkSchedule, checkTone, scheduledEnd, sineStep } from './audioChecks';
import { launchBrowser, openPage, readRecording, waitForRecordingThrough } from './browser';
import { playbackTrace, unexpectedConsoleErrors, waitForStatus } from './pageHelpers';
import { ARTIFACTS_DIR, closeQuietly, stopAll } from './processes';
import { fakeStack, type Stack } from './stack';

const RATE = 24000;
const TONE = { amplitude: 0.3, frequency: 220 };
const SLOW = { chunks: 5, delay: 0.6, chunkSeconds: 0.25 }; // 0.25 s of audio every 0.6 s

let browser: Browser;
let slow: Stack;
let failing: Stack;

beforeAll(async () => {
  [browser, slow, failing] = await Promise.all([
    launchBrowser(),
    // One stream at a time and no queue, so a second request is refused with 503.
    fakeStack('slow', { ...SLOW, maxStreams: 1, maxQueue: 0 }),
    fakeStack('failing', { chunks: 6, delay: 0.1, chunkSeconds: 0.25, failAfter: 2 }),
  ]);
});

afterAll(async () => {
  await closeQuietly(browser, slow, failing);
  await stopAll();
});

describe('resilience (fake engine)', () => {
  it('shows buffering when playback catches up, and resumes without a click', async () => {
    const { page, context, consoleErrors } = await openPage(browser, slow.url);
    await page.getByRole('button', { name: 'Play', exact: true }).click();
    await page
      .getByTestId('player-status')
      .filter({ hasText: 'Buffering' })
      .waitFor({ timeout: 10_000 });
    await page.getByTestId('buffering-badge').waitFor({ timeout: 1000 });
    await page.screenshot({ path: join(ARTIFACTS_DIR, 'buffering-desktop.png') });
    await waitForStatus(page, 'Finished.', 20_000);

    const trace = await playbackTrace(page);
    await waitForRecordingThrough(page, scheduledEnd(trace.chunks));
    const schedule = checkSchedule(trace.chunks);
    expect(trace.chunks).toHaveLength(SLOW.chunks);
    expect(schedule.overlaps).toEqual([]);
    expect(schedule.gaps).toEqual([]);
    // Every chunk after the first came after the previous one had finished playing.
    expect(schedule.underruns).toBe(SLOW.chunks - 1);
    await expect(page.getByTestId('metric-underruns').textContent()).resolves.toBe(
      String(SLOW.chunks - 1),
    );

    const tone = checkTone(await readRecording(page), trace.chunks, TONE.amplitude);
    expect(tone.coveredFrames).toBe(schedule.totalFrames);
    expect(tone.silentWindows).toBe(0);
    expect(tone.loudestInHoles).toBe(0);
    // Fades at each stop and restart: no jump bigger than the tone's own.
    expect(tone.maxStep).toBeLessThanOrEqual(sineStep(TONE.amplitude, TONE.frequency, RATE) * 1.05);
    expect(consoleErrors).toEqual([]);
    await context.close();
  });

  it('stops at once: the request is cancelled and the worker frees its slot', async () => {
    const { page, context, consoleErrors } = await openPage(browser, slow.url);
    await page.getByRole('button', { name: 'Play', exact: true }).click();
    await page.getByTestId('metric-chunks').filter({ hasText: '1' }).waitFor({ timeout: 10_000 });
    // The player's Stop (the live-text demo has one too).
    await page
      .getByRole('region', { name: 'Streaming player' })
      .getByRole('button', { name: 'Stop' })
      .click();
    await waitForStatus(page, 'Stopped.');
    const health = async (): Promise<{ active_streams: number }> =>
      (await (await fetch(`${slow.worker.url}/health`)).json()) as { active_streams: number };
    const deadline = Date.now() + 5000;
    while ((await health()).active_streams > 0 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
    }
    expect((await health()).active_streams).toBe(0);
    const chunks = (await playbackTrace(page)).chunks.length;
    await page.waitForTimeout(1500); // no more chunks arrive after Stop
    expect((await playbackTrace(page)).chunks.length).toBe(chunks);
    expect(chunks).toBeLessThan(SLOW.chunks);
    await expect(
      page.getByRole('button', { name: 'Download WAV (partial)' }).isEnabled(),
    ).resolves.toBe(true);
    expect(consoleErrors).toEqual([]);
    await context.close();
  });

  it('tells the user the server is busy (503) and recovers', async () => {
    // Another client takes the only stream slot.
    const holder = new AbortController();
    const taken = await fetch(`${slow.url}/synthesize-stream`, {
      method: 'POST',
      body: new URLSearchParams({ text: 'hold the slot' }),
      signal: holder.signal,
    });
    expect(taken.status).toBe(200);
    const reader = taken.body?.getReader();
    void reader?.read().catch(() => undefined);

    const { page, context, consoleErrors } = await openPage(browser, slow.url);
    await page.getByRole('button', { name: 'Play', exact: true }).click();
    await page
      .getByTestId('player-error')
      .filter({ hasText: /^The server is busy, try again in \d+ seconds?\./ })
      .waitFor();
    await expect(page.getByTestId('player-status').textContent()).resolves.toBe(
      'Could not synthesize.',
    );
    await expect(page.getByRole('button', { name: 'Play', exact: true }).isEnabled()).resolves.toBe(
      true,
    );
    await page.screenshot({ path: join(ARTIFACTS_DIR, 'busy-desktop.png') });

    holder.abort();
    await reader?.cancel().catch(() => undefined);
    // Once the slot is free again, the same button works.
    await page.waitForTimeout(1500);
    await page.getByRole('button', { name: 'Play', exact: true }).click();
    await waitForStatus(page, 'Finished.', 20_000);
    expect(unexpectedConsoleErrors(consoleErrors, [503])).toEqual([]);
    await context.close();
  });

  it('reports a stream that fails partway and keeps the audio received', async () => {
    const { page, context, consoleErrors } = await openPage(browser, failing.url);
    await page.getByRole('button', { name: 'Play', exact: true }).click();
    await page
      .getByTestId('player-error')
      .filter({ hasText: 'Synthesis stopped partway: synthesis failed: fake engine failure.' })
      .waitFor({ timeout: 10_000 });
    await expect(page.getByTestId('player-status').textContent()).resolves.toBe(
      'Stopped by an error.',
    );
    const trace = await playbackTrace(page);
    expect(trace.chunks.map((c) => c.chunkId)).toEqual([1, 2]);
    expect(checkSchedule(trace.chunks).gaps).toEqual([]);
    const download = page.getByRole('button', { name: 'Download WAV (partial)' });
    await expect(download.isEnabled()).resolves.toBe(true);
    await expect(page.getByRole('button', { name: 'Play', exact: true }).isEnabled()).resolves.toBe(
      true,
    );
    await page.screenshot({ path: join(ARTIFACTS_DIR, 'stream-error-desktop.png') });
    expect(consoleErrors).toEqual([]);
    await context.close();
  });
});
