/**
 * Progress for long byte-moving work (saving, compressing, hashing, loading): the ui's
 * implementations of the services' ProgressReporter port (bars, plain lines, or nothing).
 */
import cliProgress from 'cli-progress';
import type { ProgressReporter, ProgressTask } from '../services/reporter.js';
import { formatBytes } from './format.js';

export function createProgress(
  mode: 'bars' | 'lines' | 'silent',
  stream: NodeJS.WritableStream,
): ProgressReporter {
  if (mode === 'silent') return silentProgress;
  if (mode === 'lines') return new LineReporter(stream);
  return new BarReporter(stream);
}

const noopTask: ProgressTask = { update() {}, setTotal() {}, done() {} };
const silentProgress: ProgressReporter = {
  overall: () => noopTask,
  task: () => noopTask,
  note() {},
  stop() {},
};

/** Without a TTY: one line when a task ends, and at most one overall line every 10 seconds. */
class LineReporter implements ProgressReporter {
  constructor(private readonly stream: NodeJS.WritableStream) {}

  overall(label: string, totalBytes: number): ProgressTask {
    const started = Date.now();
    let last = started;
    let total = totalBytes;
    return {
      update: (done) => {
        const now = Date.now();
        if (now - last < 10_000) return;
        last = now;
        const rate = done / Math.max(1e-3, (now - started) / 1000);
        this.stream.write(`${label}: ${formatBytes(done)} of ${formatBytes(total)} (${formatBytes(rate)}/s)\n`);
      },
      setTotal: (t) => {
        total = t;
      },
      done: (summary) => {
        if (summary) this.stream.write(`${label}: ${summary}\n`);
      },
    };
  }

  task(label: string): ProgressTask {
    return {
      update() {},
      setTotal() {},
      done: (summary) => {
        this.stream.write(summary ? `${label}: ${summary}\n` : `${label}: done\n`);
      },
    };
  }

  note(message: string): void {
    this.stream.write(`${message}\n`);
  }

  stop(): void {}
}

const LABEL_WIDTH = 24;

/**
 * A bar's label in a fixed width. A long one keeps its first word (the phase: "staging", "loading")
 * and the end of the rest (an image's name and tag), e.g. "staging …mo/web:1.0.0"; the middle of a
 * registry path is what an operator misses least.
 */
export function fitLabel(label: string, width: number): string {
  if (label.length <= width) return label.padEnd(width);
  const space = label.indexOf(' ');
  const head = space > 0 && space < width / 2 ? label.slice(0, space + 1) : '';
  const rest = label.slice(head.length);
  return `${head}…${rest.slice(rest.length - (width - head.length - 1))}`;
}

class BarReporter implements ProgressReporter {
  private readonly multi: cliProgress.MultiBar;

  constructor(stream: NodeJS.WritableStream) {
    this.multi = new cliProgress.MultiBar(
      {
        stream: stream as NodeJS.WriteStream,
        clearOnComplete: false,
        hideCursor: true,
        etaBuffer: 50,
        fps: 5,
        format: '{label} |{bar}| {percentage}% {doneh}/{totalh} {rate}/s ETA {eta_formatted}',
        formatValue: (v, _o, type) => (type === 'percentage' ? String(v).padStart(3) : String(v)),
      },
      cliProgress.Presets.shades_classic,
    );
  }

  overall(label: string, totalBytes: number): ProgressTask {
    return this.task(label, totalBytes);
  }

  task(label: string, totalBytes: number): ProgressTask {
    const started = Date.now();
    let total = Math.max(1, totalBytes);
    const payload = (done: number) => ({
      label: fitLabel(label, LABEL_WIDTH),
      doneh: formatBytes(done),
      totalh: formatBytes(total),
      rate: formatBytes(done / Math.max(1e-3, (Date.now() - started) / 1000)),
    });
    const bar = this.multi.create(total, 0, payload(0));
    return {
      update: (done) => bar.update(Math.min(done, total), payload(done)),
      setTotal: (t) => {
        total = Math.max(1, t);
        bar.setTotal(total);
      },
      done: () => {
        bar.update(total, payload(total));
        bar.stop();
      },
    };
  }

  note(message: string): void {
    this.multi.log(`${message}\n`);
  }

  stop(): void {
    this.multi.stop();
  }
}
