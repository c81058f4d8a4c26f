import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { bundleReadme } from '../../src/core/bundle-readme.js';
import { parseManifest } from '../../src/core/manifest.js';
import { compareSha256Sums, formatSha256Sums, parseSha256Sums } from '../../src/core/sha256sums.js';

const hex = (s: string) => createHash('sha256').update(s).digest('hex');
const files = { 'ferry.json': '{}', 'blobs/sha256/ab': 'blob', 'README.txt': 'read me', 'compose/compose.yaml': 'services: {}', 'Zed': 'upper case sorts first' };
const entries = Object.entries(files).map(([path, data]) => ({ path, sha256: hex(data) }));

describe('SHA256SUMS', () => {
  it('writes sorted "<hex>  <path>" lines that sha256sum -c accepts', () => {
    const text = formatSha256Sums(entries).toString('utf8');
    expect(text.split('\n').slice(0, -1).map((l) => l.slice(66))).toEqual(['README.txt', 'Zed', 'blobs/sha256/ab', 'compose/compose.yaml', 'ferry.json']);
    expect(text.endsWith('\n')).toBe(true);
    const dir = mkdtempSync(join(tmpdir(), 'ferry-sums-'));
    for (const [path, data] of Object.entries(files)) {
      mkdirSync(dirname(join(dir, path)), { recursive: true });
      writeFileSync(join(dir, path), data);
    }
    writeFileSync(join(dir, 'SHA256SUMS'), text);
    expect(execFileSync('sha256sum', ['-c', '--strict', 'SHA256SUMS'], { cwd: dir, encoding: 'utf8' })).toContain('compose/compose.yaml: OK');
    // …and what sha256sum itself prints for the same files, sorted alike, is the same bytes.
    const own = execFileSync('sh', ['-c', `sha256sum ${Object.keys(files).join(' ')} | LC_ALL=C sort -k2`], { cwd: dir, encoding: 'utf8' });
    expect(own).toBe(text);
  });

  it('refuses to list a path sha256sum would have to escape', () => {
    expect(() => formatSha256Sums([{ path: 'a\\b', sha256: '0'.repeat(64) }])).toThrow(/backslash/);
    expect(() => formatSha256Sums([{ path: 'a\nb', sha256: '0'.repeat(64) }])).toThrow(RangeError);
    expect(() => formatSha256Sums([{ path: 'a', sha256: 'xyz' }])).toThrow(RangeError);
  });

  it('parses its own output and names malformed lines', () => {
    expect(parseSha256Sums(formatSha256Sums(entries))).toEqual({ entries: [...entries].sort((a, b) => (a.path < b.path ? -1 : 1)), malformed: [] });
    const bad = parseSha256Sums(Buffer.from(`${'a'.repeat(64)} *binary\n${'b'.repeat(64)}  ../escape\n${'c'.repeat(64)}  ok`));
    expect(bad.entries).toEqual([{ path: 'ok', sha256: 'c'.repeat(64) }]);
    expect(bad.malformed).toEqual([expect.stringMatching(/newline/), expect.stringMatching(/^line 1 is not/), expect.stringMatching(/^line 2 names a path/)]);
  });

  it('agrees with the listing it was made from, and names every disagreement', () => {
    const sums = formatSha256Sums(entries);
    expect(compareSha256Sums(sums, entries)).toEqual([]);
    const changed = Buffer.from(sums.toString('utf8').replace(hex('blob'), hex('bl0b')));
    expect(compareSha256Sums(changed, entries)).toEqual([{ file: 'blobs/sha256/ab', kind: 'digest', message: expect.stringContaining('SHA256SUMS gives blobs/sha256/ab') }]);
    const fewer = entries.filter((e) => e.path !== 'README.txt');
    expect(compareSha256Sums(sums, fewer).map((p) => `${p.kind}:${p.file}`)).toEqual(['extra:README.txt']);
    expect(compareSha256Sums(formatSha256Sums(fewer), entries).map((p) => `${p.kind}:${p.file}`)).toEqual(['missing:README.txt']);
    const twice = Buffer.concat([sums, Buffer.from(`${hex('blob')}  blobs/sha256/ab\n`)]);
    expect(compareSha256Sums(twice, entries).map((p) => `${p.kind}:${p.file}`)).toEqual(['extra:blobs/sha256/ab']);
  });

  it('accepts only the form ferry writes: order and line ends count', () => {
    const lines = formatSha256Sums(entries).toString('utf8').split('\n').slice(0, -1);
    const reversed = Buffer.from(`${[...lines].reverse().join('\n')}\n`);
    expect(compareSha256Sums(reversed, entries)).toEqual([{ file: 'SHA256SUMS', kind: 'malformed', message: expect.stringContaining('not as ferry writes them') }]);
    const crlf = Buffer.from(`${lines.join('\r\n')}\r\n`);
    // A \r ends each path with a character no bundle path has: every line is malformed, every file unlisted.
    expect(compareSha256Sums(crlf, entries).filter((p) => p.file === 'SHA256SUMS' && p.kind === 'malformed')).toHaveLength(entries.length);
    expect(compareSha256Sums(Buffer.alloc(0), entries).map((p) => p.kind)).toEqual(entries.map(() => 'missing'));
  });
});

describe('README.txt', () => {
  it('gives the two stock-tool commands with the signer, then how to install either way', () => {
    const text = bundleReadme({ name: 'shop', version: '1.4.2', signer: 'SHA256:abc', namespace: 'ferry-bundle' });
    expect(text).toContain('shop 1.4.2');
    expect(text).toContain('SHA256:abc');
    expect(text).toContain('  ssh-keygen -Y verify -f /etc/ferry/allowed_signers -I ferry -n ferry-bundle -s SHA256SUMS.sig < SHA256SUMS && sha256sum -c SHA256SUMS\n');
    expect(text).toContain('ssh-keygen -Y find-principals -f /etc/ferry/allowed_signers -s SHA256SUMS.sig');
    expect(text).toContain('  ./ferry bundle install .\n');
    expect(text).toMatch(/the ferry the host has: ferry bundle install \./);
    expect(text.indexOf('ssh-keygen -Y verify')).toBeLessThan(text.indexOf('./ferry bundle install'));
  });

  it('says an unsigned bundle is unsigned and checks only the copy', () => {
    const text = bundleReadme({ name: 'lab', version: '0.1', signer: null, namespace: 'ferry-bundle' });
    expect(text).toContain('UNSIGNED');
    expect(text).not.toContain('ssh-keygen');
    expect(text).toContain('  sha256sum -c SHA256SUMS\n');
    expect(text).toContain('./ferry bundle install . --allow-unsigned');
  });
});

describe('the manifest never lists the SHA256SUMS pair', () => {
  it.each(['SHA256SUMS', 'SHA256SUMS.sig'])('refuses a manifest listing %s', (path) => {
    const m = {
      format: 'ferry.bundle/v1', name: 's', version: '1', sequence: 1, created: '2026-01-01T00:00:00.000Z', expires: null, tool: { name: 'ferry', version: '0' },
      compose: { file: 'compose/compose.yaml', smoke: null, services: [], projectFiles: [], hostPaths: [] }, hosts: {}, images: [], bases: [],
      files: [{ path: 'compose/compose.yaml', size: 1, sha256: '0'.repeat(64) }, { path, size: 1, sha256: '0'.repeat(64) }],
    };
    expect(() => parseManifest(Buffer.from(JSON.stringify(m)))).toThrow(new RegExp(`may not name ${path.replace('.', '\\.')}`));
  });
});

describe('README.txt of a bundle that carries ferry', () => {
  it('says how a first visit sets ferry up before installing, and what later visits run', () => {
    const text = bundleReadme({ name: 'shop', version: '1.4.2', signer: 'SHA256:abc', namespace: 'ferry-bundle', carriesFerry: true });
    expect(text).toContain('./ferry host setup --trust allowed_signers\n  ferry bundle install .');
    expect(text).toContain('On later visits: ferry bundle install .');
    expect(text).toContain('sha256sum -c SHA256SUMS');
    const unsigned = bundleReadme({ name: 'lab', version: '0.1', signer: null, namespace: 'ferry-bundle', carriesFerry: true });
    expect(unsigned).toContain('host setup refuses unsigned bundles');
    expect(unsigned).toContain('On later visits: ferry bundle install . --allow-unsigned');
  });
});
