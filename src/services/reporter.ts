/** What a service may tell the person running it; the ui's Output implements it. */
import type { ProgressReporter } from '../ui/progress.js';
import type { Warning } from '../ui/output.js';

export interface Reporter {
  log(message: string): void;
  warn(warning: Warning): void;
  progress(): ProgressReporter;
}

/** For callers that want no output at all (tests, library use). */
export const silentReporter: Reporter = {
  log() {},
  warn() {},
  progress: () => ({
    overall: () => ({ update() {}, setTotal() {}, done() {} }),
    task: () => ({ update() {}, setTotal() {}, done() {} }),
    note() {},
    stop() {},
  }),
};
