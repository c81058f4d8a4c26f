#!/usr/bin/env node
/**
 * Seeded, reproducible fuzzing of the readers that take untrusted bundle input: the manifest
 * parser, the SSHSIG signature reader, the part reader (parts → zstd → diffID check → load
 * archive), and the trust and revoked-keys file parsers.
 *
 *   npm run fuzz                           60 s per target, seed from the clock (printed)
 *   npm run fuzz -- --seconds 300 --seed 42 --only manifest,signature
 *   npm run fuzz -- --seed 42 --only parts --case 1234 --dump    one case again, input written out
 *
 * Each case draws its input from a generator seeded by (seed, target, case number), so any case
 * a run reports can be replayed alone. A case "holds" when the reader either accepts input that
 * satisfies its invariants or refuses it with its own error type; anything else (another error,
 * an accepted input that breaks an invariant, a hang) is a crash and fails the run (exit 1).
 *
 * The test suite (test/security/fuzz.test.ts) runs the same targets against the TypeScript
 * sources for a few seconds each; this script runs the built code (dist/) for longer.
 */
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath, pathToFileURL } from 'node:url';

// ---------------------------------------------------------------------------------------------
// Deterministic randomness

/** sfc32 seeded from a string: fast, good enough, identical on every platform. */
export function rng(seedText) {
  const h = createHash('sha256').update(String(seedText)).digest();
  let a = h.readUInt32LE(0), b = h.readUInt32LE(4), c = h.readUInt32LE(8), d = h.readUInt32LE(12);
  const next = () => {
    a |= 0; b |= 0; c |= 0; d |= 0;
    const t = (((a + b) | 0) + d) | 0;
    d = (d + 1) | 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) | 0;
    c = (c << 21) | (c >>> 11);
    c = (c + t) | 0;
    return (t >>> 0) / 4294967296;
  };
  const r = {
    float: next,
    int: (n) => Math.floor(next() * n),
    chance: (p) => next() < p,
    pick: (list) => list[Math.floor(next() * list.length)],
    bytes: (n) => {
      const out = Buffer.alloc(n);
      for (let i = 0; i < n; i++) out[i] = Math.floor(next() * 256);
      return out;
    },
  };
  return r;
}

const sha256 = (data) => createHash('sha256').update(data).digest('hex');

// ---------------------------------------------------------------------------------------------
// Generic mutations

const TOKENS = [
  '[', ']', '{', '}', ',', ':', '"', '\\', '\\u0000', '\\ud800', '..', '../', '/', '\\\\', '\u202e', '\uFEFF', '1e999', '-0',
  '9007199254740993', '-1', 'null', 'true', '[[[[[[[[', '{"__proto__":{}}', '"constructor"', '\u0000', '\n', '\r\n', ' ', 'ÿ',
];

/** 1–8 byte-level edits: flips, overwrites, inserts (random or from TOKENS), deletions, copies, cuts. */
export function mutateBytes(r, input) {
  let buf = Buffer.from(input);
  const edits = 1 + r.int(8);
  for (let e = 0; e < edits; e++) {
    const at = buf.length === 0 ? 0 : r.int(buf.length);
    switch (r.int(8)) {
      case 0:
        if (buf.length) buf[at] ^= 1 << r.int(8);
        break;
      case 1:
        if (buf.length) buf[at] = r.int(256);
        break;
      case 2:
        buf = Buffer.concat([buf.subarray(0, at), r.bytes(1 + r.int(16)), buf.subarray(at)]);
        break;
      case 3:
        buf = Buffer.concat([buf.subarray(0, at), Buffer.from(r.pick(TOKENS)), buf.subarray(at)]);
        break;
      case 4:
        buf = Buffer.concat([buf.subarray(0, at), buf.subarray(Math.min(buf.length, at + 1 + r.int(64)))]);
        break;
      case 5: {
        const len = 1 + r.int(64);
        buf = Buffer.concat([buf.subarray(0, at), buf.subarray(at, at + len), buf.subarray(at)]);
        break;
      }
      case 6:
        buf = buf.subarray(0, at);
        break;
      default:
        if (buf.length > 4) buf.writeUInt32BE([0, 1, 0x7fffffff, 0xffffffff, r.int(2 ** 32)][r.int(5)] >>> 0, Math.min(at, buf.length - 4));
    }
  }
  return buf;
}

const HOSTILE_VALUES = () => [
  null, true, false, 0, -1, 1.5, 2 ** 53, 2 ** 64, -0, 1e308, '', ' ', '..', '../x', '/etc/passwd', 'a\\b', 'a/./b', 'a//b', 'x\u0000y',
  'x\ny', '\ud800', 'é', 'a'.repeat(5000), 'ferry.json', 'compose/../../x', `sha256:${'0'.repeat(64)}`, '0'.repeat(64), [], {}, [[[[[]]]]],
  { __proto__: null, a: 1 }, JSON.parse('{"__proto__": {"polluted": true}}'), '2026-01-01', 'Tue, 01 Jan 2030 00:00:00 GMT',
];

/** Replaces, deletes, duplicates or wraps one randomly chosen node of a JSON document. */
export function mutateJson(r, doc) {
  const copy = JSON.parse(JSON.stringify(doc));
  const edits = 1 + r.int(3);
  for (let e = 0; e < edits; e++) {
    // Walk down to a random container, then act on one of its members.
    let node = copy;
    for (let depth = 0; depth < 6; depth++) {
      const keys = Array.isArray(node) ? node.map((_v, i) => i) : Object.keys(node);
      const inner = keys.filter((k) => node[k] !== null && typeof node[k] === 'object');
      if (inner.length === 0 || r.chance(0.3)) break;
      node = node[r.pick(inner)];
    }
    const keys = Array.isArray(node) ? node.map((_v, i) => i) : Object.keys(node);
    const key = keys.length ? r.pick(keys) : Array.isArray(node) ? 0 : 'x';
    switch (r.int(6)) {
      case 0:
      case 1:
        node[key] = r.pick(HOSTILE_VALUES());
        break;
      case 2:
        if (Array.isArray(node)) node.splice(Number(key), 1);
        else delete node[key];
        break;
      case 3:
        if (Array.isArray(node)) node.push(JSON.parse(JSON.stringify(node[key] ?? null)));
        else node[`${String(key)}_`] = node[key];
        break;
      case 4:
        node[key] = [node[key]];
        break;
      default: {
        let v = node[key];
        const depth = 1 + r.int(200);
        for (let i = 0; i < depth; i++) v = r.chance(0.5) ? [v] : { a: v };
        node[key] = v;
      }
    }
  }
  const text = JSON.stringify(copy, null, r.pick([0, 1, 2]));
  return Buffer.from(text ?? 'null');
}

/** Random JSON-ish text from a small grammar, sometimes absurdly deep. */
function randomJson(r, depth = 0) {
  const deep = depth > 3 + r.int(60);
  const k = deep ? r.int(4) : r.int(7);
  switch (k) {
    case 0:
      return String(r.pick([0, 1, -1, 1.5, 1e21, 2 ** 53 + 1]));
    case 1:
      return JSON.stringify(r.pick(['', 'a', '../', 'ferry.bundle/v1', 'x'.repeat(r.int(300))]));
    case 2:
      return r.pick(['null', 'true', 'false']);
    case 3:
      return '';
    case 4:
      return `[${Array.from({ length: r.int(4) }, () => randomJson(r, depth + 1)).join(',')}]`;
    default:
      return `{${Array.from({ length: r.int(4) }, () => `${JSON.stringify(r.pick(['format', 'files', 'path', 'size', 'images', 'hosts', '__proto__', 'x']))}:${randomJson(r, depth + 1)}`).join(',')}}`;
  }
}

// ---------------------------------------------------------------------------------------------
// Targets. `api` holds the functions under test (from src/ in the tests, dist/ here).

function seedManifest(api) {
  const hex = (s) => sha256(s);
  const d = (s) => `sha256:${hex(s)}`;
  const files = ['compose/compose.yaml', 'compose/hosts/edge-1.yaml', 'index.json', 'oci-layout', `blobs/sha256/${hex('cfg')}`, `blobs/sha256/${hex('m')}`, `blobs/sha256/${hex('b0')}`, `blobs/sha256/${hex('b1')}.part-0001`, `blobs/sha256/${hex('b1')}.part-0002`].map((path) => ({ path, size: 10, sha256: hex(path) }));
  return {
    format: api.MANIFEST_FORMAT,
    name: 'shop',
    version: '1.4.2',
    sequence: 7,
    created: '2026-11-23T10:00:00.000Z',
    expires: null,
    tool: { name: 'ferry', version: '0.1.0' },
    compose: { file: 'compose/compose.yaml', smoke: null, services: [{ name: 'web', image: 'shop/web:1', imageId: d('cfg') }] },
    hosts: { 'edge-1': { files: ['compose/hosts/edge-1.yaml'] } },
    images: [
      {
        refs: ['shop/web:1'],
        id: d('cfg'),
        os: 'linux',
        architecture: 'amd64',
        config: { path: `blobs/sha256/${hex('cfg')}`, size: 10 },
        ociManifest: { digest: d('m'), size: 10, path: `blobs/sha256/${hex('m')}` },
        layers: [
          { diffId: d('l0'), chainId: d('l0'), size: 100, included: true, blob: { digest: d('b0'), size: 10, mediaType: 'x', path: `blobs/sha256/${hex('b0')}` } },
          {
            diffId: d('l1'),
            chainId: d('c1'),
            size: 100,
            included: true,
            blob: { digest: d('b1'), size: 20, mediaType: 'x', parts: [{ path: `blobs/sha256/${hex('b1')}.part-0001`, size: 10, sha256: hex('p1') }, { path: `blobs/sha256/${hex('b1')}.part-0002`, size: 10, sha256: hex('p2') }] },
          },
        ],
      },
    ],
    files,
  };
}

/** What any manifest the parser accepts must satisfy: every path safe and listed, every size a safe count. */
function manifestInvariants(api, m) {
  const problems = [];
  const listed = new Set();
  const okSize = (n) => Number.isSafeInteger(n) && n >= 0;
  const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,3})?Z$/;
  if (m.format !== api.MANIFEST_FORMAT) problems.push('format');
  if (!/^[a-z0-9][a-z0-9_-]{0,62}$/.test(m.name)) problems.push('name');
  if (!ISO.test(m.created) || (m.expires !== null && !ISO.test(m.expires))) problems.push('dates');
  for (const f of m.files) {
    if (!api.isSafeRelativePath(f.path)) problems.push(`unsafe file path ${JSON.stringify(f.path)}`);
    if (!okSize(f.size)) problems.push('file size');
    if (listed.has(f.path)) problems.push('duplicate path');
    listed.add(f.path);
  }
  const ref = (p, what) => {
    if (!api.isSafeRelativePath(p) || !listed.has(p)) problems.push(`${what} ${JSON.stringify(p)} unsafe or unlisted`);
  };
  ref(m.compose.file, 'compose.file');
  for (const h of Object.values(m.hosts)) for (const p of h.files) ref(p, 'host file');
  for (const im of m.images) {
    ref(im.config.path, 'config');
    ref(im.ociManifest.path, 'oci manifest');
    for (const l of im.layers) {
      if (!okSize(l.size)) problems.push('layer size');
      if (!l.blob) continue;
      if (l.blob.path !== undefined) ref(l.blob.path, 'blob');
      for (const p of l.blob.parts ?? []) ref(p.path, 'part');
    }
  }
  return problems;
}

/** A buffer as a stream of chunks, as it arrives from a file or a socket. */
async function* pieces(buf, size) {
  for (let i = 0; i < buf.length; i += size) yield buf.subarray(i, i + size);
}

export const TARGETS = {
  manifest: {
    setup(api) {
      const doc = seedManifest(api);
      const text = Buffer.from(JSON.stringify(doc, null, 2));
      api.parseManifest(text); // the seed itself must be accepted, or the fuzzing proves nothing
      return { doc, text };
    },
    input(r, ctx) {
      const k = r.int(10);
      if (k < 4) return mutateBytes(r, ctx.text);
      if (k < 9) return mutateJson(r, ctx.doc);
      return Buffer.from(randomJson(r));
    },
    run(api, _ctx, input) {
      let m;
      try {
        m = api.parseManifest(input);
      } catch (e) {
        if (e instanceof api.ManifestInvalid) return 'refused';
        throw e;
      }
      const problems = manifestInvariants(api, m);
      if (problems.length) throw new Error(`accepted a manifest that breaks invariants: ${problems.slice(0, 3).join('; ')}`);
      return 'accepted';
    },
  },

  signature: {
    setup(api) {
      const pair = api.generateKeyPair('fuzz');
      const key = api.parseSigningKey(pair.privateKey, 'fuzz');
      const message = Buffer.from('{"format":"ferry.bundle/v1"}\n');
      const armored = key.sign(message, api.BUNDLE_NAMESPACE);
      const signers = api.parseAllowedSigners(`ferry namespaces="ferry-bundle" ${pair.publicKeyLine}\n`);
      const wire = Buffer.from(armored.replace(/-----[^-]+-----/g, '').replace(/\s+/g, ''), 'base64');
      api.verifySignature(message, armored, api.BUNDLE_NAMESPACE, signers);
      return { message, armored, signers, wire };
    },
    input(r, ctx) {
      const k = r.int(10);
      if (k < 3) return { message: ctx.message, sig: mutateBytes(r, Buffer.from(ctx.armored)) };
      if (k < 8) {
        const wire = mutateBytes(r, ctx.wire);
        const b64 = wire.toString('base64').replace(/.{70}/g, '$&\n');
        return { message: ctx.message, sig: Buffer.from(`-----BEGIN SSH SIGNATURE-----\n${b64}\n-----END SSH SIGNATURE-----\n`) };
      }
      if (k < 9) return { message: mutateBytes(r, ctx.message), sig: Buffer.from(ctx.armored) };
      return { message: ctx.message, sig: r.bytes(r.int(2048)) };
    },
    run(api, ctx, input) {
      for (const fn of [() => api.parseSignature(input.sig), () => api.verifySignature(input.message, input.sig, api.BUNDLE_NAMESPACE, ctx.signers)]) {
        try {
          fn();
        } catch (e) {
          if (e instanceof api.TrustError) return 'refused';
          throw e;
        }
      }
      // Accepted: only harmless armor changes may pass, never other signed bytes or another message.
      const text = input.sig.toString('utf8');
      const wire = Buffer.from(text.replace(/-----[^-]+-----/g, '').replace(/\s+/g, ''), 'base64');
      if (!wire.equals(ctx.wire) || !input.message.equals(ctx.message)) throw new Error('accepted a signature or message that differs from the one signed');
      return 'accepted';
    },
  },

  delta: {
    // A layer delta from a stick, rebuilt against the reference a host's engine gives: whatever
    // the bytes, it is refused or gives exactly the layer; never a crash, a hang or other bytes.
    setup(api) {
      const r = rng('delta-setup');
      const reference = Buffer.concat([r.bytes(20_000), Buffer.alloc(30_000, 0x61), r.bytes(14_000)]);
      const fresh = r.bytes(700);
      const target = Buffer.concat([reference.subarray(0, 20_000), fresh, reference.subarray(30_000)]);
      const expect = { reference: `sha256:${sha256(reference)}`, referenceSize: reference.length, target: `sha256:${sha256(target)}`, targetSize: target.length };
      const header = api.encodeDeltaHeader({ ...expect, changes: { added: [{ path: 'a', size: 1, mode: 420, type: '0' }], changed: [], removed: ['b'], omitted: 0 } });
      const delta = Buffer.concat([header, api.encodeCopy(0, 20_000), api.encodeDataStart(fresh.length), fresh, api.encodeCopy(30_000, reference.length - 30_000), api.END_OP]);
      return { reference, target, expect, delta, headerLength: header.length };
    },
    input(r, ctx) {
      const k = r.int(10);
      // Mostly the ops (the header is small and JSON): bit flips, cuts, splices, random tails.
      if (k < 7) return { delta: mutateBytes(r, ctx.delta), expect: ctx.expect };
      if (k < 8) return { delta: Buffer.concat([ctx.delta.subarray(0, ctx.headerLength), r.bytes(r.int(256))]), expect: ctx.expect };
      if (k < 9) return { delta: ctx.delta, expect: { ...ctx.expect, targetSize: r.pick([0, ctx.expect.targetSize - 1, ctx.expect.targetSize + 1, 2 ** 40]) } };
      return { delta: r.bytes(r.int(512)), expect: ctx.expect };
    },
    async run(api, ctx, input) {
      const out = [];
      try {
        for await (const c of api.rebuildLayer(pieces(input.delta, 97), pieces(ctx.reference, 4096), input.expect)) out.push(c);
      } catch (e) {
        if (e instanceof api.DeltaError) return 'refused';
        throw e;
      }
      if (!Buffer.concat(out).equals(ctx.target)) throw new Error('a delta was accepted that does not give the layer');
      return 'accepted';
    },
  },

  parts: {
    streams: true,
    async setup(api, work) {
      const r = rng('parts-setup');
      // Compressible and not: a layer is usually a mix.
      const layer = Buffer.concat([r.bytes(24 * 1024), Buffer.alloc(40 * 1024, 0x61), r.bytes(8 * 1024)]);
      const blob = await api.compress(layer);
      const cut = [0, blob.length >> 2, blob.length >> 1, blob.length];
      const parts = [0, 1, 2].map((i) => blob.subarray(cut[i], cut[i + 1]));
      const other = await api.compress(Buffer.alloc(layer.length, 0x62));
      return { work, layer, blob, parts, other, diffId: `sha256:${sha256(layer)}`, n: 0 };
    },
    input(r, ctx) {
      const parts = ctx.parts.map((p) => Buffer.from(p));
      let diffId = ctx.diffId;
      let size = ctx.layer.length;
      let order = [0, 1, 2];
      let missing = -1;
      // A few untouched cases: the control that shows an intact blob does go through.
      const edits = r.chance(0.05) ? 0 : 1 + r.int(3);
      for (let e = 0; e < edits; e++) {
        const i = r.int(3);
        switch (r.int(9)) {
          case 0:
          case 1:
          case 2:
            parts[i] = mutateBytes(r, parts[i]);
            break;
          case 3:
            order = r.pick([[1, 0, 2], [0, 2, 1], [2, 1, 0]]);
            break;
          case 4:
            parts[i] = Buffer.alloc(0);
            break;
          case 5:
            parts[i] = Buffer.concat([parts[i], r.chance(0.5) ? ctx.other : r.bytes(1 + r.int(256))]);
            break;
          case 6:
            size = r.pick([0, size - 1, size + 1, 2 ** 40]);
            break;
          case 7:
            diffId = `sha256:${sha256(r.bytes(8))}`;
            break;
          default:
            missing = i;
        }
      }
      return { parts, order, diffId, size, missing };
    },
    async run(api, ctx, input) {
      const dir = join(ctx.work, `case-${ctx.n++}`);
      await mkdir(dir, { recursive: true });
      try {
        const names = input.parts.map((_p, i) => `blobs/sha256/${'a'.repeat(64)}.part-000${i + 1}`);
        await mkdir(join(dir, 'blobs', 'sha256'), { recursive: true });
        await Promise.all(input.parts.map((p, i) => (i === input.missing ? undefined : writeFile(join(dir, names[i]), p))));
        const blob = { digest: `sha256:${'a'.repeat(64)}`, size: input.parts.reduce((n, p) => n + p.length, 0), mediaType: 'x', parts: input.order.map((i) => ({ path: names[i], size: input.parts[i].length, sha256: sha256(input.parts[i]) })) };
        const config = Buffer.from('{}');
        const image = { id: `sha256:${sha256(config)}`, config, tags: ['fuzz/x:1'], layers: [{ diffId: input.diffId, size: input.size, blob }] };
        const stream = api.loadArchive(dir, [image]);
        let timer;
        const outcome = await Promise.race([
          pipeline(stream, new Writable({ write: (_c, _e, cb) => cb() })).then(
            () => 'accepted',
            () => 'refused',
          ),
          new Promise((res) => (timer = setTimeout(() => res('hang'), 15_000))),
        ]);
        clearTimeout(timer);
        if (outcome === 'hang') {
          stream.destroy();
          throw new Error('the load stream neither ended nor failed within 15 s');
        }
        if (outcome === 'accepted') {
          // Only the exact layer, under its real digest and size, may go through.
          const joined = Buffer.concat(input.order.map((i) => input.parts[i]));
          let content = null;
          try {
            content = await api.decompress(joined);
          } catch {
            content = null;
          }
          if (!content || !content.equals(ctx.layer) || input.diffId !== ctx.diffId || input.size !== ctx.layer.length) {
            throw new Error('the load stream accepted parts that do not decompress to the signed layer');
          }
        }
        return outcome;
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    },
  },

  trust: {
    setup(api) {
      const a = api.generateKeyPair('a').publicKeyLine;
      const b = api.generateKeyPair('b').publicKeyLine;
      const text = Buffer.from(
        `# hosts of group A\nalice,bob namespaces="ferry-bundle",valid-after="20250101",valid-before="20991231Z" ${a}\n"carol dave" cert-authority ${b} comment\n*@example.com ${b}\n`,
      );
      api.parseAllowedSigners(text.toString('utf8'));
      api.parseRevokedKeys(text.toString('utf8'));
      return { text };
    },
    input(r, ctx) {
      return mutateBytes(r, ctx.text);
    },
    run(api, _ctx, input) {
      let accepted = 0;
      for (const fn of [api.parseAllowedSigners, api.parseRevokedKeys]) {
        try {
          fn(input.toString('utf8'), 'fuzz');
          accepted++;
        } catch (e) {
          if (!(e instanceof api.TrustError)) throw e;
        }
      }
      return accepted === 2 ? 'accepted' : 'refused';
    },
  },
};

/**
 * While a case runs, an uncaught exception or unhandled rejection is the case's crash, not the
 * harness's: the listeners already there (a test runner's) are set aside and put back after.
 */
function trapUncaught(onError) {
  const saved = { uncaughtException: process.listeners('uncaughtException'), unhandledRejection: process.listeners('unhandledRejection') };
  for (const event of Object.keys(saved)) process.removeAllListeners(event);
  process.on('uncaughtException', onError);
  process.on('unhandledRejection', onError);
  return () => {
    for (const [event, listeners] of Object.entries(saved)) {
      process.removeAllListeners(event);
      for (const l of listeners) process.on(event, l);
    }
  };
}

/**
 * Runs each target for `budgetMs` (or `cases` cases). Returns per target: cases, accepted,
 * refused, crashes (each with its case number and message), and the slowest case in ms.
 */
export async function fuzz(api, { seed, budgetMs = 5000, cases, only, onlyCase, dump, log = () => {} } = {}) {
  const work = await mkdtemp(join(tmpdir(), 'ferry-fuzz-'));
  const results = {};
  try {
    for (const [name, target] of Object.entries(TARGETS)) {
      if (only && !only.includes(name)) continue;
      const ctx = await target.setup(api, work);
      const res = { cases: 0, accepted: 0, refused: 0, crashes: [], slowestMs: 0 };
      const started = Date.now();
      for (let i = onlyCase ?? 0; ; i++) {
        if (onlyCase !== undefined ? i > onlyCase : cases !== undefined ? i >= cases : Date.now() - started >= budgetMs) break;
        const input = target.input(rng(`${seed}/${name}/${i}`), ctx);
        if (dump) {
          const file = resolve(dump, `fuzz-${name}-${seed}-${i}.json`);
          await mkdir(dirname(file), { recursive: true });
          await writeFile(file, JSON.stringify(input, (_k, v) => (v && v.type === 'Buffer' ? Buffer.from(v.data).toString('base64') : v), 2));
          log(`case input written to ${file}`);
        }
        const t0 = performance.now();
        const uncaught = [];
        const restore = trapUncaught((e) => uncaught.push(e));
        try {
          const outcome = await target.run(api, ctx, input);
          // Errors emitted without a listener surface a few ticks after a stream settles.
          if (target.streams) {
            await new Promise((r) => setTimeout(r, 0));
            await new Promise((r) => setImmediate(r));
          }
          if (uncaught.length) throw new Error(`uncaught error (it would kill the ferry process): ${String(uncaught[0]?.stack ?? uncaught[0])}`);
          res[outcome] += 1;
        } catch (e) {
          res.crashes.push({ case: i, error: String(e?.stack ?? e).split('\n').slice(0, 4).join(' | ') });
        } finally {
          restore();
        }
        res.slowestMs = Math.max(res.slowestMs, Math.round(performance.now() - t0));
        res.cases += 1;
      }
      results[name] = res;
      log(`fuzz ${name}: ${res.cases} cases (seed ${seed}), ${res.refused} refused, ${res.accepted} accepted within invariants, ${res.crashes.length} crashes, slowest ${res.slowestMs} ms`);
      for (const c of res.crashes.slice(0, 5)) log(`  crash at case ${c.case}: ${c.error}\n  replay: npm run fuzz -- --seed ${seed} --only ${name} --case ${c.case} --dump .bench`);
    }
  } finally {
    await rm(work, { recursive: true, force: true });
  }
  return results;
}

// ---------------------------------------------------------------------------------------------
// Command line: the built code

async function main() {
  const args = process.argv.slice(2);
  const opt = (name) => {
    const i = args.indexOf(`--${name}`);
    return i >= 0 ? args[i + 1] : undefined;
  };
  const seed = opt('seed') ?? String(Date.now());
  const seconds = Number(opt('seconds') ?? 60);
  const only = opt('only')?.split(',');
  const onlyCase = opt('case') !== undefined ? Number(opt('case')) : undefined;
  const dump = args.includes('--dump') ? resolve(opt('dump') && !opt('dump').startsWith('--') ? opt('dump') : '.bench') : undefined;
  const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
  const dist = (p) => import(pathToFileURL(join(root, 'dist', p)).href);
  const [manifest, paths, signing, keyFiles, allowed, errors, load, zstd, delta] = await Promise.all([
    dist('core/manifest.js'),
    dist('core/paths.js'),
    dist('core/sshsig.js'),
    dist('core/openssh-key.js'),
    dist('core/allowed-signers.js'),
    dist('errors.js'),
    dist('adapters/load-archive.js'),
    import('zstd-napi'),
    dist('core/layer-delta.js'),
  ]).catch((e) => {
    console.error(`fuzz: cannot load the built code (${e.message}); run \`npm run build\` first`);
    process.exit(2);
  });
  const api = {
    ...manifest,
    ...paths,
    ...signing,
    ...keyFiles,
    ...allowed,
    ...errors,
    ...load,
    ...delta,
    compress: async (b) => zstd.compress(b),
    decompress: async (b) => zstd.decompress(b),
  };
  console.error(`fuzz: seed ${seed}, ${onlyCase !== undefined ? `case ${onlyCase}` : `${seconds} s per target`}`);
  const results = await fuzz(api, { seed, budgetMs: seconds * 1000, only, onlyCase, dump, log: (l) => console.error(l) });
  await mkdir(join(root, '.bench'), { recursive: true });
  await writeFile(join(root, '.bench', 'fuzz-results.json'), `${JSON.stringify({ seed, seconds, at: new Date().toISOString(), results }, null, 2)}\n`);
  const crashes = Object.values(results).reduce((n, r) => n + r.crashes.length, 0);
  console.error(crashes ? `fuzz: ${crashes} crashes` : 'fuzz: no crashes');
  process.exit(crashes ? 1 : 0);
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) await main();
