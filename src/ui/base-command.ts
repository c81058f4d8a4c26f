/**
 * Every ferry command extends this. It owns the output contract:
 * - `--json`: exactly one document on stdout, {"ok":true,"result","warnings"} or
 *   {"ok":false,"error":{code,exitCode,message,details}};
 * - otherwise the command's rendered text on stdout and logs/progress on stderr;
 * - errors of any kind are mapped to the documented exit codes here and nowhere else.
 */
import { Command, Errors } from '@oclif/core';
import { BugError, EXIT_CODES_HELP, FerryError, UsageError } from '../errors.js';
import { Output } from './output.js';

export abstract class FerryCommand extends Command {
  static override enableJsonFlag = true;

  protected out!: Output;

  /**
   * Appends the exit-code table so that every command's --help documents it. oclif wraps each
   * line itself, so paragraphs are reflowed into single lines; indented lines stay as written.
   */
  static describe(text: string): string {
    const reflowed = text
      .split(/\n{2,}/)
      .map((para) => para.replace(/\n(?! )/g, ' '))
      .join('\n\n');
    return `${reflowed}\n\n${EXIT_CODES_HELP}`;
  }

  override async init(): Promise<void> {
    await super.init();
    this.out = new Output({ json: this.jsonEnabled() });
  }

  protected override toSuccessJson(result: unknown): unknown {
    return { ok: true, result, warnings: this.out?.warnings ?? [] };
  }

  protected override logJson(json: unknown): void {
    (this.out ?? new Output({ json: true })).jsonDocument(json);
  }

  override async catch(error: unknown): Promise<void> {
    const err = toFerryError(error);
    process.exitCode = err.exitCode;
    const out = this.out ?? new Output({ json: this.jsonEnabled() });
    if (this.jsonEnabled()) {
      out.jsonDocument({
        ok: false,
        error: { code: err.code, exitCode: err.exitCode, message: err.message, details: err.details ?? null, nextSteps: err.nextSteps },
        warnings: out.warnings,
      });
      return;
    }
    let text = `error: ${err.message}`;
    for (const step of err.nextSteps) text += `\n  ${step}`;
    if (err.exitCode === 1 && error instanceof Error && error.stack) text += `\n${error.stack}`;
    out.errorText(text);
  }
}

export function toFerryError(error: unknown): FerryError {
  if (error instanceof FerryError) return error;
  // oclif's flag/argument parse errors carry exit 2; keep its message, which names the flag.
  if (error instanceof Errors.CLIError) {
    const exit = (error as Errors.CLIError).oclif?.exit;
    if (exit === 2 || /flag|argument|Missing|Unexpected/i.test(error.message)) {
      // oclif says "The following error occurred:\n  Missing required flag out"; say it plainly.
      const message = error.message
        .replace(/\n+See more help with --help$/, '')
        .replace(/^The following errors? occurred:\s*/, '')
        .replace(/\n\s+/g, '; ')
        .replace(/(required flag) (?!-)([\w-]+)/g, '$1 --$2');
      return new UsageError('USAGE', message, {
        hint: 'See --help for the flags and arguments this command takes.',
      });
    }
  }
  const message = error instanceof Error ? error.message : String(error);
  return new BugError('UNEXPECTED', `unexpected error: ${message}`, { cause: error });
}
