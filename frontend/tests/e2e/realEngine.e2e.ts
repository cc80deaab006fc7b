/**
 * The real engine (full-size random-weight checkpoint: the audio is noise, the compute is
 * real) behind the balancer: a short request streams several chunks on this CPU, slower than
 * real time, and the player lays them out without overlaps, re-anchoring only at underruns.
 */
import { join } from 'node:path';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkSchedule } from './audioChecks';
import { launchBrowser, openPage } from './browser';
import { playbackTrace, waitForStatus } from './pageHelpers';
import { ARTIFACTS_DIR, closeQuietly, stopAll } from './processes';
import { realStack, type Stack } from './stack';

const RATE = 24000;
const MAX_TOKENS = 30; // ~80 ms each on a 2-core CPU: a few seconds of generation

let browser: Browser;
let stack: Stack;

beforeAll(async () => {
  [browser, stack] = await Promise.all([launchBrowser(), realStack('real')]);
}, 300_000);

afterAll(async () => {
  await closeQuietly(browser, stack);
  await stopAll();
});

describe('real engine on the random checkpoint', () => {
  it('streams a short request and schedules its chunks contiguously', async () => {
    const { page, context, consoleErrors } = await openPage(browser, stack.url);
    await page.getByText('Server ready').waitFor();
    await page.getByLabel('Text to speak').fill('A short test of the real engine.');
    await page.getByLabel('Chunk size (tokens), exact value').fill('10');
    await page.getByText('Advanced parameters').click();
    await page.getByLabel('Max speech tokens').fill(String(MAX_TOKENS));
    await page.getByLabel('Seed').fill('7');
    await page.getByRole('button', { name: 'Play', exact: true }).press('Enter');
    await waitForStatus(page, 'Finished.', 120_000);

    const trace = await playbackTrace(page);
    expect(trace.error).toBeNull();
    expect(trace.streamSampleRate).toBe(RATE);
    expect(trace.chunks.length).toBeGreaterThanOrEqual(2);
    const schedule = checkSchedule(trace.chunks);
    expect(schedule.overlaps).toEqual([]);
    expect(schedule.gaps).toEqual([]);
    const shown = Number.parseFloat(
      (await page.getByTestId('metric-duration').textContent()) ?? 'NaN',
    );
    expect(schedule.totalFrames / RATE).toBeCloseTo(shown, 1);
    // Random weights never say "stop": the token cap ends the speech, and the page says so.
    await page.getByText('The length cap was reached').waitFor();
    await page.screenshot({ path: join(ARTIFACTS_DIR, 'real-engine-desktop.png'), fullPage: true });
    expect(consoleErrors).toEqual([]);
    console.log(
      `real engine: ${trace.chunks.length} chunks, ${(schedule.totalFrames / RATE).toFixed(2)} s of audio, ` +
        `${schedule.underruns} underruns, first audio ${await page.getByTestId('metric-ttfa').textContent()}`,
    );
    await context.close();
  }, 150_000);
});
