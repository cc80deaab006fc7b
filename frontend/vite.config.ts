import react from '@vitejs/plugin-react';
import { defineConfig } from 'vitest/config';

// `npm run dev` proxies the API to a balancer or a worker (CHATTERBOX_API, default the worker's
// default port) so the app is same-origin in development as it is behind the balancer.
const API_TARGET = process.env.CHATTERBOX_API ?? 'http://127.0.0.1:6093';
const API_PATHS = ['/synthesize-stream', '/synthesize', '/voices', '/health', '/stats', '/v1'];

export default defineConfig({
  plugins: [react()],
  build: {
    outDir: 'dist',
    sourcemap: true,
  },
  server: {
    // `/v1` carries the text-to-speech WebSockets too.
    proxy: Object.fromEntries(
      API_PATHS.map((path) => [path, { target: API_TARGET, ws: path === '/v1' }]),
    ),
  },
  test: {
    include: ['tests/unit/**/*.test.ts'],
    environment: 'node',
    reporters: ['default', './tests/summaryReporter.ts'],
  },
});
