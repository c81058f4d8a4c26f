/**
 * The port through which a service tells the person running it what happens. Services define it
 * here and never import ui; the ui implements it (Output, FleetDisplay) and chooses the words, so
 * the same event can be a bar on a terminal, a plain line in a log, or nothing under --json.
 */

export interface Warning {
  code: string;
  message: string;
  /** What the warning is about: a service, an image, a file. */
  subject?: string;
}

/**
 * Progress for long byte-moving work (saving, compressing, hashing, loading). Services report
 * through this narrow interface and never know whether a person, a log file or nobody watches.
 */
export interface ProgressTask {
  /** Bytes done so far for this task (absolute, not a delta). */
  update(doneBytes: number): void;
  /** Total may only be learned late (a layer's size shows when its tar header arrives). */
  setTotal(totalBytes: number): void;
  done(summary?: string): void;
}

export interface ProgressReporter {
  /** The overall bar; total may be an estimate and grow. */
  overall(label: string, totalBytes: number): ProgressTask;
  task(label: string, totalBytes: number): ProgressTask;
  /** A line of detail (a layer done) that must not tear the bars. */
  note(message: string): void;
  stop(): void;
}

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
