/**
 * Field checks for untrusted JSON documents (bundle manifests, host inventories). Each check
 * records a problem naming the field and returns whether it passed, so a validator can walk a
 * whole document and report every problem at once instead of stopping at the first.
 */
import { isDigest } from './digest.js';

export type Obj = Record<string, unknown>;

export const MAX_STRING = 4096;

export class JsonChecker {
  /**
   * @param maxProblems beyond this many, further problems are not recorded: a hostile document
   *   could otherwise turn millions of bad values into millions of messages.
   */
  constructor(
    protected readonly problems: string[],
    private readonly maxProblems = Number.POSITIVE_INFINITY,
  ) {}

  protected fail(where: string, what: string): false {
    if (this.problems.length < this.maxProblems) this.problems.push(`${where || 'the document'} ${what}`);
    return false;
  }

  object(value: unknown, where: string): Obj | undefined {
    if (typeof value === 'object' && value !== null && !Array.isArray(value)) return value as Obj;
    this.fail(where, 'must be an object');
    return undefined;
  }

  array(value: unknown, where: string, max: number): unknown[] | undefined {
    if (!Array.isArray(value)) return void this.fail(where, 'must be an array');
    if (value.length > max) return void this.fail(where, `has ${value.length} entries, more than ${max}`);
    return value;
  }

  string(value: unknown, where: string): boolean {
    return (typeof value === 'string' && value.length > 0 && value.length <= MAX_STRING) || this.fail(where, 'must be a non-empty string');
  }

  integer(value: unknown, where: string): boolean {
    return (typeof value === 'number' && Number.isSafeInteger(value) && value >= 0) || this.fail(where, 'must be a whole number ≥ 0');
  }

  digest(value: unknown, where: string): boolean {
    return isDigest(value) || this.fail(where, 'must be a sha256:<64 hex> digest');
  }
}
