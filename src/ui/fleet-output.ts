/**
 * What a fleet install shows while it runs: one line per host. On a terminal that is one live bar
 * per host whose text is the host's latest step; otherwise (CI, a log file) every step is a plain
 * line prefixed with the host; under --json nothing (warnings still land in the JSON document).
 */
import { Writable } from 'node:stream';
import cliProgress from 'cli-progress';
import type { FleetHostResult, FleetReporter } from '../services/fleet.js';
import type { ProgressReporter, ProgressTask, Warning } from '../services/reporter.js';
import { formatBytes } from './format.js';
import type { Output } from './output.js';
import { createProgress } from './progress.js';

export class FleetDisplay {
  private readonly mode: 'bars' | 'lines' | 'silent';
  private multi: cliProgress.MultiBar | undefined;
  private readonly reporters = new Map<string, FleetReporter>();
  private readonly bars = new Map<string, cliProgress.SingleBar>();
  private readonly width: number;

  constructor(
    private readonly out: Output,
    private readonly targets: string[],
    private readonly stream: NodeJS.WriteStream = process.stderr,
  ) {
    this.mode = out.json ? 'silent' : stream.isTTY ? 'bars' : 'lines';
    this.width = Math.min(32, Math.max(...targets.map((t) => t.length)));
  }

  /** The bars appear with the first host, so that what runs before (the bundle's check) shows alone. */
  private startBars(): void {
    if (this.mode === 'bars' && !this.multi) {
      this.multi = new cliProgress.MultiBar(
        {
          stream: this.stream,
          hideCursor: true,
          clearOnComplete: false,
          fps: 5,
          linewrap: false,
          format: '{target} |{bar}| {status}',
          barsize: 20,
        },
        cliProgress.Presets.shades_classic,
      );
      // Created up front, in argument order, so each host keeps its line.
      for (const t of this.targets) this.bars.set(t, this.multi.create(1, 0, { target: this.pad(t), status: 'waiting' }));
    }
  }

  private pad(target: string): string {
    return target.length > this.width ? `${target.slice(0, this.width - 1)}…` : target.padEnd(this.width);
  }

  reporterFor(target: string): FleetReporter {
    let r = this.reporters.get(target);
    if (!r) {
      this.startBars();
      r = this.mode === 'bars' ? this.barReporter(target) : this.lineReporter(target);
      this.reporters.set(target, r);
    }
    return r;
  }

  stop(): void {
    this.multi?.stop();
  }

  private prefixed(target: string, w: Warning): Warning {
    return { ...w, message: `[${target}] ${w.message}`, subject: w.subject ? `${target}: ${w.subject}` : target };
  }

  private lineReporter(target: string): FleetReporter {
    const prefix = `[${target}] `;
    const stream = this.stream;
    const prefixing = new Writable({
      write(chunk: Buffer, _enc, cb) {
        const text = chunk.toString('utf8');
        stream.write(text.split('\n').map((l, i, all) => (l || i < all.length - 1 ? `${prefix}${l}` : l)).join('\n'));
        cb();
      },
    });
    return {
      log: (m) => this.out.log(`${prefix}${m}`),
      warn: (w) => this.out.warn(this.prefixed(target, w)),
      progress: () => createProgress(this.mode === 'silent' ? 'silent' : 'lines', prefixing),
      finish: (r) => this.out.log(`${prefix}${outcomeLine(r)}`),
    };
  }

  private barReporter(target: string): FleetReporter {
    const bar = this.bars.get(target)!;
    let total = 1;
    const status = (text: string) => bar.update({ status: text.replace(/\s+/g, ' ') });
    const task = (label: string, bytes: number): ProgressTask => {
      total = Math.max(1, bytes);
      bar.setTotal(total);
      bar.update(0, { status: label });
      return {
        update: (done) => bar.update(Math.min(done, total), { status: `${label} ${formatBytes(done)} of ${formatBytes(total)}` }),
        setTotal: (t) => {
          total = Math.max(1, t);
          bar.setTotal(total);
        },
        done: (summary) => bar.update(total, { status: summary ? `${label}: ${summary}` : `${label}: done` }),
      };
    };
    // One line per host: the overall bar drives it; per-image bars would fight over that line.
    const quiet: ProgressTask = { update() {}, setTotal() {}, done() {} };
    const progress: ProgressReporter = { overall: task, task: () => quiet, note: status, stop() {} };
    return {
      log: status,
      warn: (w) => {
        const p = this.prefixed(target, w);
        // Output.warn would write straight to the terminal and tear the bars.
        this.out.warnings.push(p);
        this.multi?.log(`warning: ${p.message}\n`);
      },
      progress: () => progress,
      finish: (r) => {
        bar.setTotal(1);
        bar.update(r.ok ? 1 : 0, { status: outcomeLine(r) });
      },
    };
  }
}

export function outcomeLine(r: FleetHostResult): string {
  const secs = `${(r.durationMs / 1000).toFixed(1)} s`;
  switch (r.outcome) {
    case 'installed':
      return `installed ${r.result?.version ?? ''} on ${r.host} in ${secs}`;
    case 'already-current':
      return `${r.result?.version ?? ''} already current on ${r.host}`;
    case 'loaded':
      return `images of ${r.result?.version ?? ''} loaded on ${r.host} in ${secs} (--no-up)`;
    case 'skipped':
      return 'not started (--fail-fast after an earlier failure)';
    case 'failed':
      return `FAILED (exit ${r.exitCode}) after ${secs}: ${r.error?.message ?? ''}`;
  }
}
