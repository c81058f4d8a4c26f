/**
 * The only writer to stdout and stderr. stdout carries the result alone (text, or one JSON
 * document under --json) so that `ferry … --json | jq` always works; logs, warnings and progress
 * go to stderr, and progress bars only when a person is watching (stderr is a TTY).
 */
import type { ProgressReporter, Warning } from '../services/reporter.js';
import { createProgress } from './progress.js';

export interface OutputOptions {
  json: boolean;
  /** Suppress informational logs (warnings still print). */
  quiet?: boolean;
  stdout?: NodeJS.WritableStream;
  stderr?: NodeJS.WritableStream & { isTTY?: boolean };
}

export class Output {
  readonly json: boolean;
  readonly warnings: Warning[] = [];
  private readonly quiet: boolean;
  private readonly stdout: NodeJS.WritableStream;
  private readonly stderr: NodeJS.WritableStream & { isTTY?: boolean };

  constructor(options: OutputOptions) {
    this.json = options.json;
    this.quiet = options.quiet ?? false;
    this.stdout = options.stdout ?? process.stdout;
    this.stderr = options.stderr ?? process.stderr;
  }

  /** A line of what is happening, for people; silent under --json. */
  log(message: string): void {
    if (!this.json && !this.quiet) this.stderr.write(`${message}\n`);
  }

  warn(warning: Warning): void {
    this.warnings.push(warning);
    if (!this.json) this.stderr.write(`warning: ${warning.message}\n`);
  }

  /** The human-readable result. Under --json the base command prints the document instead. */
  result(text: string): void {
    if (!this.json) this.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
  }

  jsonDocument(doc: unknown): void {
    this.stdout.write(`${JSON.stringify(doc, null, 2)}\n`);
  }

  errorText(text: string): void {
    this.stderr.write(text.endsWith('\n') ? text : `${text}\n`);
  }

  /** Bars on a TTY, periodic plain lines otherwise, nothing under --json. */
  progress(): ProgressReporter {
    const mode = this.json ? 'silent' : this.stderr.isTTY ? 'bars' : 'lines';
    return createProgress(mode, this.stderr);
  }
}
