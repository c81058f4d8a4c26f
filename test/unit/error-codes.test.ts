/**
 * Error and warning codes are a contract with scripts: one exported list (ERROR_CODES and
 * WARNING_CODES in src/errors.ts), documented in README.md. This greps src for the codes it uses
 * (`new XError('CODE', …)` on one line or several, `super('CODE', …)`, `code: 'CODE'` in warn calls
 * and elsewhere) and fails when a used code is missing from the lists or a listed one is unused.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { constants } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import * as errors from '../../src/errors.js';
import { ERROR_CODES, FerryError, WARNING_CODES } from '../../src/errors.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const SRC = join(ROOT, 'src');

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = join(dir, e.name);
    if (e.isDirectory()) return sourceFiles(p);
    return e.name.endsWith('.ts') ? [p] : [];
  });
}

interface Use {
  code: string;
  where: string;
  /** The class constructed, when the code is a constructor's first argument. */
  cls?: string;
}

const CONSTRUCTED = /\bnew\s+(\w+)\(\s*'([A-Z][A-Z0-9_]*)'/g;
const SUPER = /\bsuper\(\s*'([A-Z][A-Z0-9_]*)'/g;
// reporter.warn({ code: … }), options.warn?.({ code: … }), and warnings.push({ code: … }) of core's checks.
const WARNED = /(?:\bwarn\??\.?\(|\bwarnings\.push\()\s*\{\s*code:\s*'([A-Z][A-Z0-9_]*)'/g;
const CODE_FIELD = /\bcode:\s*'([A-Z][A-Z0-9_]*)'/g;
/** errno names (ENOENT, EFBIG) also appear as `code: '…'`: they are Node's, not ferry's. */
const ERRNO = new Set(Object.keys(constants.errno));

function usesIn(files: string[]): { errors: Use[]; warnings: Use[]; other: Use[] } {
  const out = { errors: [] as Use[], warnings: [] as Use[], other: [] as Use[] };
  for (const file of files) {
    const text = readFileSync(file, 'utf8');
    const where = (index: number) => `${relative(ROOT, file)}:${text.slice(0, index).split('\n').length}`;
    for (const m of text.matchAll(CONSTRUCTED)) out.errors.push({ code: m[2]!, cls: m[1]!, where: where(m.index) });
    for (const m of text.matchAll(SUPER)) {
      const cls = [...text.slice(0, m.index).matchAll(/\bclass\s+(\w+)/g)].at(-1)?.[1];
      out.errors.push({ code: m[1]!, ...(cls ? { cls } : {}), where: where(m.index) });
    }
    const warned = new Set<number>();
    for (const m of text.matchAll(WARNED)) {
      out.warnings.push({ code: m[1]!, where: where(m.index) });
      warned.add(m.index + m[0].lastIndexOf('code:'));
    }
    // Any other `code: 'X'`: an error code built indirectly (adapters/medium.ts's causes, fleet's per-host error).
    for (const m of text.matchAll(CODE_FIELD)) {
      if (!warned.has(m.index) && !ERRNO.has(m[1]!)) out.other.push({ code: m[1]!, where: where(m.index) });
    }
  }
  return out;
}

const errorCodes = new Set(Object.keys(ERROR_CODES));
const warningCodes = new Set(Object.keys(WARNING_CODES));
const missing = (uses: Use[], list: Set<string>) => uses.filter((u) => !list.has(u.code)).map((u) => `${u.code} (${u.where})`);

/** The exit code each error class gives, from the classes themselves; two classes outside errors.ts end as build input. */
function exitOfClass(): Map<string, number> {
  const exits = new Map<string, number>([
    ['ProjectPlanError', errors.ExitCode.buildInput], // services/project.ts turns it into a BuildInputError with its code
    ['InventoryInvalid', errors.ExitCode.buildInput], // extends BuildInputError
  ]);
  for (const [name, value] of Object.entries(errors)) {
    if (typeof value !== 'function' || !(value.prototype instanceof FerryError) || name === 'FleetFailedError') continue;
    const made = new (value as new (code: string, message: string) => FerryError)('X', 'x');
    exits.set(name, made.exitCode);
  }
  return exits;
}

describe('error and warning codes: one exported list, documented', () => {
  const uses = usesIn(sourceFiles(SRC));

  it('finds the codes of src, one-line and multi-line constructions alike', () => {
    expect(uses.errors.length).toBeGreaterThan(100);
    expect(uses.errors.map((u) => u.code)).toEqual(expect.arrayContaining(['BUNDLE_INTEGRITY', 'HOST_KEY_CHANGED', 'FLEET_FAILED', 'INVENTORY_INVALID']));
    expect(uses.warnings.map((u) => u.code)).toEqual(expect.arrayContaining(['UNSIGNED', 'NO_HEALTHCHECK', 'HOST_KEY_ADDED', 'COMPOSE_V1_RECREATE']));
    expect(uses.other.map((u) => u.code)).toEqual(expect.arrayContaining(['OUTPUT_READ_ONLY', 'UNEXPECTED']));
  });

  it('every error code src raises is in ERROR_CODES', () => {
    expect(missing(uses.errors, errorCodes)).toEqual([]);
  });

  it('every warning code src reports is in WARNING_CODES', () => {
    expect(missing(uses.warnings, warningCodes)).toEqual([]);
  });

  it("every other `code: 'X'` in src is a listed code", () => {
    expect(missing(uses.other, new Set([...errorCodes, ...warningCodes]))).toEqual([]);
  });

  it('every listed code is used in src', () => {
    const raised = new Set([...uses.errors, ...uses.other].map((u) => u.code));
    const warned = new Set(uses.warnings.map((u) => u.code));
    expect([...errorCodes].filter((c) => !raised.has(c))).toEqual([]);
    expect([...warningCodes].filter((c) => !warned.has(c))).toEqual([]);
  });

  it("each error code's listed exit code is the one its error class gives", () => {
    const exits = exitOfClass();
    expect(exits.get('UsageError')).toBe(2);
    const wrong = uses.errors
      .filter((u) => u.cls !== undefined && exits.has(u.cls) && errorCodes.has(u.code))
      .filter((u) => ERROR_CODES[u.code as keyof typeof ERROR_CODES].exit !== exits.get(u.cls!))
      .map((u) => `${u.code}: listed ${ERROR_CODES[u.code as keyof typeof ERROR_CODES].exit}, ${u.cls} gives ${exits.get(u.cls!)} (${u.where})`);
    expect(wrong).toEqual([]);
    expect(ERROR_CODES.FLEET_FAILED.exit).toBe('fleet');
  });

  it('README.md lists every code with its exit code, and no other', () => {
    const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
    const section = (heading: string) => {
      const start = readme.indexOf(`#### ${heading}\n`);
      expect(start, `README.md has no "#### ${heading}" section`).toBeGreaterThan(0);
      const end = readme.indexOf('\n#', start + 1);
      return readme.slice(start, end < 0 ? undefined : end);
    };
    const rows = (text: string) => [...text.matchAll(/^\| `([A-Z][A-Z0-9_]*)` \| ([^|]+) \|/gm)].map((m) => [m[1]!, m[2]!.trim()] as const);
    const documentedErrors = rows(section('Error codes'));
    expect(documentedErrors.map(([c]) => c).sort()).toEqual([...errorCodes].sort());
    for (const [code, exit] of documentedErrors) {
      const listed = ERROR_CODES[code as keyof typeof ERROR_CODES].exit;
      expect(exit, code).toBe(typeof listed === 'number' ? String(listed) : "first failed host's");
    }
    expect(rows(section('Warning codes')).map(([c]) => c).sort()).toEqual([...warningCodes].sort());
  });
});
