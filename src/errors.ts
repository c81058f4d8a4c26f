/**
 * Typed errors. Every failure a user can cause or meet ends up as one of these, and the base
 * command turns it into a message and an exit code in one place. The codes are a contract with
 * scripts: they are listed in every command's --help and in the README, and never reused.
 */

export const ExitCode = {
  ok: 0,
  bug: 1,
  usage: 2,
  trust: 3,
  integrity: 4,
  policy: 5,
  hostPrecondition: 6,
  deployRestored: 7,
  deployFailed: 8,
  buildInput: 10,
} as const;
export type ExitCodeValue = (typeof ExitCode)[keyof typeof ExitCode];

export const EXIT_CODES_HELP = `Exit codes:
  0 ok · 1 unexpected error (a bug: please report it) · 2 usage
  3 trust: signature missing, invalid, untrusted key, wrong namespace
  4 integrity: bundle file missing, extra, wrong size or digest
  5 policy: downgrade, wrong host, expired
  6 host precondition: engine unreachable, no space, missing layers, no compose
  7 deploy failed, previous release restored · 8 deploy and restore failed
  10 build input: image not found, bad definition, unreadable key, output exists`;

export interface ErrorOptions {
  /** Machine-readable details for --json (file names, digests, lists of problems). */
  details?: unknown;
  /** What the user can do about it; printed under the message. */
  hint?: string;
  cause?: unknown;
}

export abstract class FerryError extends Error {
  abstract readonly exitCode: ExitCodeValue;
  /** Stable identifier for scripts, e.g. "TRUST_UNTRUSTED_KEY". */
  readonly code: string;
  readonly details?: unknown;
  readonly hint?: string;

  constructor(code: string, message: string, options: ErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.details = options.details;
    this.hint = options.hint;
  }
}

export class UsageError extends FerryError {
  readonly exitCode = ExitCode.usage;
}
export class TrustError extends FerryError {
  readonly exitCode = ExitCode.trust;
}
export class IntegrityError extends FerryError {
  readonly exitCode = ExitCode.integrity;
}
export class PolicyError extends FerryError {
  readonly exitCode = ExitCode.policy;
}
export class HostPreconditionError extends FerryError {
  readonly exitCode = ExitCode.hostPrecondition;
}
export class DeployRestoredError extends FerryError {
  readonly exitCode = ExitCode.deployRestored;
}
export class DeployFailedError extends FerryError {
  readonly exitCode = ExitCode.deployFailed;
}
export class BuildInputError extends FerryError {
  readonly exitCode = ExitCode.buildInput;
}
export class BugError extends FerryError {
  readonly exitCode = ExitCode.bug;
}

/** One problem found while checking something; verify collects all of them before failing. */
export interface Problem {
  /** The bundle-relative file (or other thing) the problem is about. */
  file: string;
  kind: 'missing' | 'extra' | 'size' | 'digest' | 'not-regular' | 'unreadable';
  message: string;
}
