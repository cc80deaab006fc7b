/**
 * The app in Chromium against a real worker (fast fake engine) behind the balancer: streaming
 * playback checked on the audio clock and in the recorded output, download, comparison,
 * phone width and keyboard use, validation and voice management.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkSchedule, checkTone, scheduledEnd, sineStep } from './audioChecks';
import { LANGUAGES } from '../../src/lib/languages';
import { toneWav } from './audioFiles';
import { launchBrowser, openPage, readRecording, waitForRecordingThrough } from './browser';
import { playbackTrace, unexpectedConsoleErrors, waitForStatus } from './pageHelpers';
import { ARTIFACTS_DIR, closeQuietly, stopAll } from './processes';
import { fakeStack, type Stack } from './stack';

const RATE = 24000;
const CHUNKS = 8;
const CHUNK_SECONDS = 0.25;
const TONE = { amplitude: 0.3, frequency: 220 };

let browser: Browser;
let stack: Stack;

beforeAll(async () => {
  [browser, stack] = await Promise.all([
    launchBrowser(),
    fakeStack('fast', { chunks: CHUNKS, delay: 0.1, chunkSeconds: CHUNK_SECONDS }),
  ]);
  console.log(`app served by the ${stack.via} at ${stack.url}`);
});

afterAll(async () => {
  await closeQuietly(browser, stack);
  await stopAll();
});

describe('streaming playback (fake engine)', () => {
  it('plays streamed chunks back to back on the audio clock, with no gap or click', async () => {
    const { page, context, consoleErrors } = await openPage(browser, stack.url);
    await page.getByText('Server ready').waitFor();
    await page.getByLabel('Text to speak').fill('Streaming test sentence.');
    await page.getByRole('button', { name: 'Play', exact: true }).press('Enter');
    await waitForStatus(page, 'Finished.');

    const trace = await playbackTrace(page);
    await waitForRecordingThrough(page, scheduledEnd(trace.chunks));
    expect(trace.contextSampleRate).toBe(RATE);
    expect(trace.streamSampleRate).toBe(RATE);
    expect(trace.contextState).toBe('running');
    expect(trace.chunks.map((c) => c.chunkId)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    const schedule = checkSchedule(trace.chunks);
    expect(schedule.overlaps).toEqual([]);
    expect(schedule.gaps).toEqual([]);
    expect(schedule.underruns).toBe(0);
    expect(schedule.totalFrames).toBe(CHUNKS * CHUNK_SECONDS * RATE);

    // What was really played: the tone, unbroken, at the scheduled frames.
    const tone = checkTone(await readRecording(page), trace.chunks, TONE.amplitude);
    expect(tone.coveredFrames).toBe(schedule.totalFrames);
    expect(tone.windowsChecked).toBeGreaterThan(150);
    expect(tone.silentWindows).toBe(0);
    expect(tone.peak).toBeLessThanOrEqual(TONE.amplitude * 1.01); // nothing played twice at once
    expect(tone.maxStep).toBeLessThanOrEqual(sineStep(TONE.amplitude, TONE.frequency, RATE) * 1.05);

    await expect(page.getByTestId('metric-chunks').textContent()).resolves.toBe('8');
    await expect(page.getByTestId('metric-duration').textContent()).resolves.toBe('2.00 s');
    await expect(page.getByTestId('metric-underruns').textContent()).resolves.toBe('0');
    expect(await page.getByTestId('metric-ttfa').textContent()).toMatch(/^\d+\.\d\d s$/);

    const [download] = await Promise.all([
      page.waitForEvent('download'),
      page.getByRole('button', { name: 'Download WAV' }).click(),
    ]);
    const wav = await readFile(await download.path());
    expect(download.suggestedFilename()).toBe('chatterbox-stream.wav');
    expect(wav.toString('ascii', 0, 4)).toBe('RIFF');
    expect(wav.readUInt32LE(24)).toBe(RATE);
    expect(wav.length).toBe(44 + CHUNKS * CHUNK_SECONDS * RATE * 2);

    await page.screenshot({ path: join(ARTIFACTS_DIR, 'streaming-desktop.png'), fullPage: true });
    expect(consoleErrors).toEqual([]);
    await context.close();
  });

  it('compares streaming with regular synthesis of the same text', async () => {
    const { page, context, consoleErrors } = await openPage(browser, stack.url);
    await page.getByRole('button', { name: 'Compare streaming vs regular' }).click();
    await page
      .getByTestId('comparison-status')
      .filter({ hasText: 'Done.' })
      .waitFor({ timeout: 30_000 });
    const seconds = async (id: string): Promise<number> =>
      Number.parseFloat((await page.getByTestId(id).textContent()) ?? 'NaN');
    const streaming = await seconds('ttfa-streaming');
    const regular = await seconds('ttfa-regular');
    // The fake engine makes a chunk every 0.1 s: streaming starts after one, regular after all.
    expect(streaming).toBeGreaterThan(0);
    expect(regular).toBeGreaterThan(streaming);
    expect(regular).toBeGreaterThanOrEqual(CHUNKS * 0.1 - 0.05);
    const widths = await page
      .locator('.bar')
      .evaluateAll((bars) => bars.map((b) => b.getBoundingClientRect().width));
    expect(widths).toHaveLength(2);
    expect(widths[0] ?? 0).toBeGreaterThan(0);
    expect(widths[1] ?? 0).toBeGreaterThan(widths[0] ?? 0);
    await expect(page.locator('audio').count()).resolves.toBe(1);
    await page.screenshot({ path: join(ARTIFACTS_DIR, 'comparison-desktop.png'), fullPage: true });
    expect(consoleErrors).toEqual([]);
    await context.close();
  });

  it('fits a phone screen and plays from the keyboard alone', async () => {
    const { page, context, consoleErrors } = await openPage(browser, stack.url, {
      width: 390,
      height: 844,
    });
    await page.getByText('Server ready').waitFor();
    const overflow = await page.evaluate(
      () => document.documentElement.scrollWidth - window.innerWidth,
    );
    expect(overflow).toBeLessThanOrEqual(0);
    await page.keyboard.press('Tab');
    expect(await page.evaluate(() => document.activeElement?.textContent)).toBe('Skip to the demo');
    // Following the skip link passes the header (the API key field, the health badge).
    await page.keyboard.press('Enter');
    await page.keyboard.press('Tab');
    expect(await page.evaluate(() => document.activeElement?.id)).toBe('synthesis-text');
    await page.keyboard.press('Control+A');
    await page.keyboard.type('Typed on a phone.');
    await page.keyboard.press('Control+Enter');
    await waitForStatus(page, 'Finished.');
    expect(checkSchedule((await playbackTrace(page)).chunks).gaps).toEqual([]);
    await page.screenshot({ path: join(ARTIFACTS_DIR, 'streaming-phone.png'), fullPage: true });

    // The comparison chart fits too.
    await page.getByRole('button', { name: 'Compare streaming vs regular' }).focus();
    await page.keyboard.press('Enter');
    await page
      .getByTestId('comparison-status')
      .filter({ hasText: 'Done.' })
      .waitFor({ timeout: 30_000 });
    expect(
      await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth),
    ).toBeLessThanOrEqual(0);
    await page.getByTestId('comparison-chart').screenshot({
      path: join(ARTIFACTS_DIR, 'comparison-phone.png'),
    });
    expect(consoleErrors).toEqual([]);
    await context.close();
  });

  it('says what is wrong with a parameter before sending anything', async () => {
    const { page, context, consoleErrors } = await openPage(browser, stack.url);
    let streams = 0;
    page.on('request', (r) => {
      if (r.url().endsWith('/synthesize-stream')) streams += 1;
    });
    await page.getByLabel('Temperature, exact value').fill('0');
    await page.getByRole('button', { name: 'Play', exact: true }).click();
    await page.getByText('Temperature must be a number in (0, 5]').waitFor();
    expect(await page.evaluate(() => document.activeElement?.id)).toBe('param-temperature');
    await page.getByLabel('Temperature, exact value').fill('0.8');

    await page.getByText('Advanced parameters').click();
    await page.getByLabel('Max speech tokens').fill('5000');
    await page.getByRole('button', { name: 'Play', exact: true }).click();
    await page.getByText('Max speech tokens must be an integer in [1, 4000]').waitFor();
    expect(streams).toBe(0);
    await page.getByLabel('Max speech tokens').fill('');
    await page.getByRole('button', { name: 'Play', exact: true }).click();
    await waitForStatus(page, 'Finished.');
    expect(streams).toBe(1);
    expect(consoleErrors).toEqual([]);
    await context.close();
  });

  it("shows the server's refusal of an unusable audio prompt in plain words", async () => {
    const { page, context, consoleErrors } = await openPage(browser, stack.url);
    await page.getByLabel('One-off audio prompt').check();
    await page.getByTestId('prompt-file').setInputFiles({
      name: 'short.wav',
      mimeType: 'audio/wav',
      buffer: toneWav(1),
    });
    await page.getByRole('button', { name: 'Play', exact: true }).click();
    const message =
      "That audio file can't be used: audio prompt is 1.0 s long; it must be longer than 5 s.";
    await page.getByTestId('player-error').filter({ hasText: message }).waitFor();
    await page.getByTestId('voice-error').filter({ hasText: message }).waitFor();
    await expect(page.getByRole('button', { name: 'Play', exact: true }).isEnabled()).resolves.toBe(
      true,
    );
    expect(unexpectedConsoleErrors(consoleErrors, [422])).toEqual([]);

    // A usable prompt works.
    await page
      .getByTestId('prompt-file')
      .setInputFiles({ name: 'me.wav', mimeType: 'audio/wav', buffer: toneWav(6) });
    await page.getByRole('button', { name: 'Play', exact: true }).click();
    await waitForStatus(page, 'Finished.');
    await context.close();
  });

  it('offers the languages /health lists, with a sample in each, and sends the choice', async () => {
    const { page, context, consoleErrors } = await openPage(browser, stack.url);
    await page.getByText('Server ready').waitFor();
    const picker = page.locator('#synthesis-language');
    expect(await picker.count()).toBe(0); // the fake model speaks English only: no choice
    const text = page.getByLabel('Text to speak');
    const english = await text.inputValue();

    // Say the model speaks Japanese too: the worker, which does not, refuses it as it should.
    await page.route('**/health', async (route) => {
      const response = await route.fetch();
      const body = (await response.json()) as Record<string, unknown>;
      await route.fulfill({ response, json: { ...body, languages: ['en', 'ja'] } });
    });
    await page.reload();
    await picker.waitFor();
    await picker.selectOption('ja');
    await expect(text.inputValue()).resolves.toBe(LANGUAGES.ja?.sample);
    await expect(text.getAttribute('lang')).resolves.toBe('ja');

    let form = '';
    page.on('request', (r) => {
      if (r.url().endsWith('/synthesize-stream')) form = r.postData() ?? '';
    });
    await page.getByRole('button', { name: 'Play', exact: true }).click();
    const refusal = "Language 'ja' is not spoken here; the loaded model speaks en.";
    await page.getByTestId('player-error').filter({ hasText: refusal }).waitFor();
    await page.locator('.field-error').filter({ hasText: refusal }).waitFor();
    expect(await page.evaluate(() => document.activeElement?.id)).toBe('synthesis-language');
    expect(form).toMatch(/name="language"\r\n\r\nja\r\n/);

    await picker.selectOption('en');
    await expect(text.inputValue()).resolves.toBe(english);
    await page.getByRole('button', { name: 'Play', exact: true }).click();
    await waitForStatus(page, 'Finished.');
    expect(form).toMatch(/name="language"\r\n\r\nen\r\n/);

    // The live-text demo sends it as ElevenLabs' `language_code`.
    const live = page.getByRole('region', { name: 'Live text' });
    await live.getByRole('combobox', { name: 'Language' }).selectOption('ja');
    const socket = page.waitForEvent('websocket');
    await live.getByRole('button', { name: 'Start' }).click();
    expect((await socket).url()).toMatch(/[?&]language_code=ja(&|$)/);
    await page.getByTestId('live-error').filter({ hasText: "'ja' is not spoken here" }).waitFor();
    expect(unexpectedConsoleErrors(consoleErrors, [422])).toEqual([]);
    await context.close();
  });

  it('saves a voice, speaks with it and deletes it', async () => {
    const { page, context, consoleErrors } = await openPage(browser, stack.url);
    await page.getByText('Save a new voice').click();
    await page.getByLabel('Name', { exact: true }).fill('Short clip');
    await page
      .getByTestId('voice-file')
      .setInputFiles({ name: 'a.wav', mimeType: 'audio/wav', buffer: toneWav(2) });
    await page.getByRole('button', { name: 'Save voice' }).click();
    await page
      .getByTestId('voice-save-status')
      .filter({ hasText: 'must be longer than 5 s' })
      .waitFor();

    await page.getByLabel('Name', { exact: true }).fill('Test voice');
    await page
      .getByTestId('voice-file')
      .setInputFiles({ name: 'b.wav', mimeType: 'audio/wav', buffer: toneWav(6) });
    await page.getByRole('button', { name: 'Save voice' }).click();
    await page.getByTestId('voice-save-status').filter({ hasText: 'Saved "Test voice"' }).waitFor();
    const saved = page.getByLabel('Saved voice', { exact: true }).and(page.locator('select'));
    await expect(saved.inputValue()).resolves.toMatch(/^test-voice-/);

    let form = '';
    page.on('request', (r) => {
      if (r.url().endsWith('/synthesize-stream')) form = r.postData() ?? '';
    });
    await page.getByRole('button', { name: 'Play', exact: true }).click();
    await waitForStatus(page, 'Finished.');
    expect(form).toMatch(/name="voice"\r\n\r\ntest-voice-/);

    await page.getByRole('button', { name: /Delete saved voice Test voice/ }).click();
    await page.getByText('No saved voices yet').waitFor();
    expect(unexpectedConsoleErrors(consoleErrors, [422])).toEqual([]);
    await context.close();
  });
});
