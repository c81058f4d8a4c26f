/**
 * Fuzzing, bounded for the test suite: the harness of scripts/fuzz.mjs (`npm run fuzz` runs it
 * longer against dist/) driving the TypeScript sources. A fixed seed keeps CI reproducible; set
 * FERRY_FUZZ_SEED to explore, FERRY_CAMPAIGN=long for a longer run. Every crash is reported with
 * the command that replays it.
 */
import { compress, decompress } from 'zstd-napi';
import { describe, expect, it } from 'vitest';
import { parseAllowedSigners, parseRevokedKeys } from '../../src/core/allowed-signers.js';
import { ManifestInvalid, MANIFEST_FORMAT, parseManifest } from '../../src/core/manifest.js';
import { isSafeRelativePath } from '../../src/core/paths.js';
import { loadArchive } from '../../src/adapters/load-archive.js';
import { DeltaError, encodeCopy, encodeDataStart, encodeDeltaHeader, END_OP, rebuildLayer } from '../../src/core/layer-delta.js';
import { generateKeyPair, parseSigningKey } from '../../src/core/openssh-key.js';
import { BUNDLE_NAMESPACE, parseSignature, verifySignature } from '../../src/core/sshsig.js';
import { TrustError } from '../../src/errors.js';
// The harness `npm run fuzz` runs against dist/, here against the sources.
import { fuzz } from '../../scripts/fuzz.mjs';
import { LONG, recordFigure } from './campaign.js';

const api = {
  parseManifest,
  ManifestInvalid,
  MANIFEST_FORMAT,
  isSafeRelativePath,
  verifySignature,
  parseSignature,
  generateKeyPair,
  parseSigningKey,
  BUNDLE_NAMESPACE,
  parseAllowedSigners,
  parseRevokedKeys,
  TrustError,
  loadArchive,
  DeltaError,
  encodeCopy,
  encodeDataStart,
  encodeDeltaHeader,
  END_OP,
  rebuildLayer,
  compress: async (b: Buffer) => compress(b),
  decompress: async (b: Buffer) => decompress(b),
};

const SEED = process.env.FERRY_FUZZ_SEED ?? 'ferry-ci-1';
const BUDGET_MS = LONG ? 60_000 : 3_000;

describe('fuzzing the readers of untrusted input (seeded, reproducible)', () => {
  for (const target of ['manifest', 'signature', 'parts', 'trust', 'delta']) {
    it(`${target}: refuses or accepts within its invariants, never crashes or hangs`, async () => {
      const results = await fuzz(api, { seed: SEED, budgetMs: BUDGET_MS, only: [target], log: (l) => void process.stderr.write(`${l}\n`) });
      const r = results[target]!;
      await recordFigure(`fuzz-${target}`, {
        cases: r.cases,
        held: r.cases - r.crashes.length,
        verb: 'refused or accepted within invariants',
        findings: r.crashes.map((c) => `case ${c.case} (seed ${SEED}): ${c.error}`),
        extra: { seed: SEED, refused: r.refused, accepted: r.accepted, slowestMs: r.slowestMs, budgetMs: BUDGET_MS },
      });
      expect(r.cases).toBeGreaterThan(20);
      expect(r.crashes).toEqual([]);
      // A single input that takes seconds is a denial of service in waiting.
      expect(r.slowestMs).toBeLessThan(target === 'parts' ? 15_000 : 2_000);
    }, BUDGET_MS + 60_000);
  }
});
