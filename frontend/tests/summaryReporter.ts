/**
 * Ends a Vitest run with one plain line, "vitest: N passed, N failed, N skipped", which CI
 * log readers understand (Vitest's own summary is decorated and split over columns).
 */
import type { Reporter, TestModule } from 'vitest/node';

export default class SummaryReporter implements Reporter {
  onTestRunEnd(testModules: readonly TestModule[], unhandledErrors: readonly unknown[]): void {
    const counts = { passed: 0, failed: 0, skipped: 0 };
    for (const module of testModules) {
      for (const test of module.children.allTests()) {
        const state = test.result().state;
        if (state === 'passed') counts.passed += 1;
        else if (state === 'failed') counts.failed += 1;
        else counts.skipped += 1;
      }
      // A file that failed to load (syntax error, failing hook) has no tests to count.
      if (module.state() === 'failed' && !module.children.size) counts.failed += 1;
    }
    counts.failed += unhandledErrors.length;
    process.stdout.write(
      `\nvitest: ${counts.passed} passed, ${counts.failed} failed, ${counts.skipped} skipped\n`,
    );
  }
}
