/** Flag value parsers shared by commands; each error names the flag and an example. */
import { UsageError } from '../errors.js';

const UNITS: Record<string, number> = { '': 1, b: 1, k: 1024, kb: 1024, kib: 1024, m: 1024 ** 2, mb: 1024 ** 2, mib: 1024 ** 2, g: 1024 ** 3, gb: 1024 ** 3, gib: 1024 ** 3 };

/** "4000000000", "3900M", "3.9GiB" → bytes (binary units). */
export function parseSize(flag: string, value: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(value);
  const unit = m ? UNITS[m[2]!.toLowerCase()] : undefined;
  if (!m || unit === undefined) throw new UsageError('BAD_FLAG', `${flag} ${JSON.stringify(value)} is not a size; use bytes or a unit, e.g. 3900M or 3.9G`);
  return Math.floor(Number(m[1]) * unit);
}

/** An ISO date, or a duration from now: "90d", "12h", "2w". */
export function parseExpiry(flag: string, value: string, now = new Date()): Date {
  const m = /^(\d+)\s*([hdw])$/.exec(value.trim());
  if (m) {
    const hours = Number(m[1]) * ({ h: 1, d: 24, w: 24 * 7 } as Record<string, number>)[m[2]!]!;
    return new Date(now.getTime() + hours * 3600_000);
  }
  const t = Date.parse(value);
  if (Number.isNaN(t)) throw new UsageError('BAD_FLAG', `${flag} ${JSON.stringify(value)} is neither a date (2027-01-31) nor a duration (90d, 12h, 2w)`);
  return new Date(t);
}
