/**
 * The code shape of design.md §3, checked: arrows point down only (commands → ui/services →
 * adapters → core). Walks the import statements of every file under src (a regex over the source
 * text, following relative paths) and lists every import that points the wrong way; and only
 * commands and ui end the process, and a use case in src/services reads as a sequence of named steps
 * (issue 19: no function there over MAX_SERVICE_FUNCTION_LINES).
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

const SRC = resolve(dirname(fileURLToPath(import.meta.url)), '../../src');

type Layer = 'sea' | 'commands' | 'ui' | 'services' | 'adapters' | 'core' | 'errors' | 'other';

/** What each layer must not import (of src). core and errors.ts are listed by what they may import. */
const FORBIDDEN: Partial<Record<Layer, Layer[]>> = {
  services: ['ui', 'commands'],
  core: ['commands', 'ui', 'services', 'adapters', 'other'],
  adapters: ['services', 'ui', 'commands'],
  // errors.ts is imported by every layer, core included: it imports nothing of src.
  errors: ['commands', 'ui', 'services', 'adapters', 'core', 'other'],
};

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = join(dir, e.name);
    if (e.isDirectory()) return sourceFiles(p);
    return e.name.endsWith('.ts') ? [p] : [];
  });
}

/** The layer of a file under src: its first folder, or `errors` for src/errors.ts. */
function layerOf(file: string): Layer {
  const parts = relative(SRC, file).split(sep);
  if (parts.length === 1) return parts[0] === 'errors.ts' ? 'errors' : 'other';
  const top = parts[0];
  // src/sea is the single executable's entry, the counterpart of bin/ferry: above commands.
  return top === 'sea' || top === 'commands' || top === 'ui' || top === 'services' || top === 'adapters' || top === 'core' ? top : 'other';
}

/** Module specifiers of static imports and re-exports (one or many lines), side-effect and dynamic imports. */
function specifiers(text: string): string[] {
  const found: string[] = [];
  const patterns = [
    /\b(?:import|export)\s[^;'"]*?\bfrom\s*['"]([^'"]+)['"]/g,
    /\bimport\s*['"]([^'"]+)['"]/g,
    /\bimport\s*\(\s*['"]([^'"]+)['"]\s*\)/g,
  ];
  for (const re of patterns) for (const m of text.matchAll(re)) found.push(m[1]!);
  return found;
}

/** The src file a relative specifier names (`./x.js` is the source `./x.ts`); null for packages and node: modules. */
function resolveImport(from: string, spec: string): string | null {
  if (!spec.startsWith('.')) return null;
  const target = resolve(dirname(from), spec);
  for (const candidate of [target.replace(/\.js$/, '.ts'), `${target}.ts`, join(target, 'index.ts'), target]) {
    if (existsSync(candidate) && candidate.endsWith('.ts')) return candidate;
  }
  throw new Error(`${relative(SRC, from)}: cannot resolve import '${spec}'`);
}

function violations(files: string[], read: (file: string) => string = (f) => readFileSync(f, 'utf8')): string[] {
  const out: string[] = [];
  for (const file of files) {
    const from = layerOf(file);
    const forbidden = FORBIDDEN[from] ?? [];
    for (const spec of specifiers(read(file))) {
      const target = resolveImport(file, spec);
      if (target === null) continue;
      const to = layerOf(target);
      if (to !== from && forbidden.includes(to)) out.push(`${relative(SRC, file)} (${from}) imports ${relative(SRC, target)} (${to})`);
    }
  }
  return out;
}

/** Files outside the entry, src/commands and src/ui that call process.exit (process.exitCode is not an exit). */
function exits(files: string[], read: (file: string) => string = (f) => readFileSync(f, 'utf8')): string[] {
  return files
    .filter((f) => !['sea', 'commands', 'ui'].includes(layerOf(f)) && /\bprocess\.exit\s*\(/.test(read(f)))
    .map((f) => relative(SRC, f));
}

/** A service function longer than this hides its steps; split it into named ones. */
const MAX_SERVICE_FUNCTION_LINES = 80;

/**
 * Functions (declarations, methods, arrows, function expressions) of one file longer than `max`
 * lines, first line to last; a nested function counts on its own and inside its parent.
 */
function longFunctions(file: string, text: string, max: number): string[] {
  const source = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true);
  const found: string[] = [];
  const visit = (node: ts.Node): void => {
    if (ts.isFunctionDeclaration(node) || ts.isMethodDeclaration(node) || ts.isArrowFunction(node) || ts.isFunctionExpression(node)) {
      const first = source.getLineAndCharacterOfPosition(node.getStart(source)).line;
      const last = source.getLineAndCharacterOfPosition(node.getEnd()).line;
      if (last - first + 1 > max) {
        const named = node.name ?? (ts.isVariableDeclaration(node.parent) || ts.isPropertyAssignment(node.parent) ? node.parent.name : undefined);
        found.push(`${relative(SRC, file)}:${first + 1} ${named ? named.getText(source) : '(anonymous)'} (${last - first + 1} lines)`);
      }
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return found;
}

describe('layering (design.md §3: arrows point down only)', () => {
  const files = sourceFiles(SRC);

  it('finds the source files and their imports', () => {
    expect(files.length).toBeGreaterThan(50);
    const create = readFileSync(join(SRC, 'services/create.ts'), 'utf8');
    expect(specifiers(create)).toContain('./reporter.js');
    // Multi-line import lists are found too.
    expect(specifiers("import {\n  a,\n  b,\n} from '../errors.js';\nexport type { C } from './c.js';\nimport('./d.js');")).toEqual([
      '../errors.js',
      './c.js',
      './d.js',
    ]);
  });

  it('flags an import that points up', () => {
    const fake = join(SRC, 'services/fake.ts');
    expect(violations([fake], () => "import type { Output } from '../ui/output.js';")).toEqual([
      `${join('services', 'fake.ts')} (services) imports ${join('ui', 'output.ts')} (ui)`,
    ]);
  });

  it('services import neither ui nor commands; core imports only core and errors.ts; adapters import no services, ui or commands', () => {
    expect(violations(files)).toEqual([]);
  });

  it('no process.exit( outside the entry (src/sea), src/commands and src/ui', () => {
    expect(exits([join(SRC, 'services/fake.ts')], () => 'void cleanup().finally(() => process.exit(130));')).toEqual([join('services', 'fake.ts')]);
    expect(exits([join(SRC, 'services/fake.ts')], () => 'process.exitCode = 2;')).toEqual([]);
    expect(exits(files)).toEqual([]);
  });

  it(`no function in src/services over ${MAX_SERVICE_FUNCTION_LINES} lines`, () => {
    const body = (n: number) => Array.from({ length: n }, (_, i) => `  step${i}();`).join('\n');
    const fake = join(SRC, 'services/fake.ts');
    expect(longFunctions(fake, `export async function long() {\n${body(80)}\n}\nconst inner = () => {\n${body(3)}\n};`, 80)).toEqual([
      `${join('services', 'fake.ts')}:1 long (82 lines)`,
    ]);
    expect(longFunctions(fake, `const run = async () => {\n${body(79)}\n};`, 80)).toEqual([`${join('services', 'fake.ts')}:1 run (81 lines)`]);
    const services = files.filter((f) => layerOf(f) === 'services');
    expect(services.flatMap((f) => longFunctions(f, readFileSync(f, 'utf8'), MAX_SERVICE_FUNCTION_LINES))).toEqual([]);
  });
});
