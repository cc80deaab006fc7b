/** What the tests read from the page. */
import type { Page } from 'playwright-core';
import type { PlaybackTrace } from '../../src/lib/trace';

export async function playbackTrace(page: Page): Promise<PlaybackTrace> {
  const trace = await page.evaluate(() => window.__chatterboxPlayback ?? null);
  if (!trace) throw new Error('the player published no trace');
  return trace;
}

export async function waitForStatus(page: Page, text: string, timeout = 30_000): Promise<void> {
  await page.getByTestId('player-status').filter({ hasText: text }).waitFor({ timeout });
}

/** Chromium logs every non-2xx response as a console error; those are expected in error tests. */
export function unexpectedConsoleErrors(
  errors: readonly string[],
  allowStatuses: number[] = [],
): string[] {
  return errors.filter(
    (e) =>
      !allowStatuses.some((status) =>
        e.includes(`Failed to load resource: the server responded with a status of ${status}`),
      ),
  );
}
