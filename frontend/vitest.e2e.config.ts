import { defineConfig } from 'vitest/config';

// Browser tests start real backend processes and one Chromium: run them one file at a time.
export default defineConfig({
  test: {
    include: ['tests/e2e/**/*.e2e.ts'],
    environment: 'node',
    fileParallelism: false,
    testTimeout: 90_000,
    hookTimeout: 120_000,
    reporters: ['verbose', './tests/summaryReporter.ts'],
  },
});
