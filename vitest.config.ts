import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Starts (or reuses) the build and airgap engines once per run and builds the demo images.
    globalSetup: ['test/support/global-setup.ts'],
    // Integration and e2e tests drive real engines (save/load, compose up --wait) on 2 cores.
    testTimeout: 120_000,
    hookTimeout: 300_000,
    teardownTimeout: 120_000,
    // Test files share the two engines (ports, compose project names, disk and CPU): one at a time.
    fileParallelism: false,
    // Forks, not threads: native addons (zstd-napi) and process.chdir/exit-heavy CLI code are
    // safer in separate processes.
    pool: 'forks',
  },
});
