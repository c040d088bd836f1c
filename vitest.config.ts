import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['tests/**/*.test.ts'],
    // ONNX Runtime sessions use native threads; forks isolate them more predictably than worker threads.
    pool: 'forks',
    testTimeout: 120_000,
    hookTimeout: 120_000,
    reporters: ['default', './tests/support/summary_reporter.ts'],
  },
});
