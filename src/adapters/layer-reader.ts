/**
 * A layer's blob decompressed and checked against its diffID on a worker thread. When ferry
 * feeds several engines at once (a fleet's hosts, a swarm's nodes) its one thread is the
 * bottleneck: it encrypts and sends every host's copy. Decompressing and hashing the one shared
 * copy on another thread leaves it only that (bench `ssh`, three hosts at once: 4.0 → 3.8 s,
 * 1.15× → 1.14× the CPU floor; peak RSS 160 → 174 MB, the thread's own heap).
 *
 * The worker's source is a string run with `eval`, so that the single executable (one bundled
 * script, no files beside it) starts it the same way as `node bin/ferry`. It uses Node's own
 * modules only: node:zlib's zstd where the runtime has it (the executable's Node), else
 * zstd-napi by absolute path (Node < 22.15, development and CI).
 */
import { createRequire } from 'node:module';
import { Readable } from 'node:stream';
import { Worker } from 'node:worker_threads';
import * as zlib from 'node:zlib';
import { notTheLayer } from './layer-fanout.js';

/** Chunks in flight per layer (128 KiB each): 1 MiB at most, whatever the ratio or the reader's pace. */
const WINDOW = 8;

const WORKER_SOURCE = String.raw`
const { parentPort, workerData } = require('node:worker_threads');
const fs = require('node:fs');
const zlib = require('node:zlib');
const { createHash } = require('node:crypto');
const OUT = 128 * 1024;
const jobs = new Map();
// Loaded as the thread starts (ahead of the first layer, see startLayerReader), not on first use.
const zstdNapi = workerData.zstdNapi ? require(workerData.zstdNapi) : null;

parentPort.on('message', (m) => {
  if (m.op === 'open') {
    const job = { credit: m.credit, wake: null, cancelled: false };
    jobs.set(m.id, job);
    run(m, job).then(
      (end) => { jobs.delete(m.id); parentPort.postMessage({ id: m.id, end }); },
      (e) => { jobs.delete(m.id); if (!job.cancelled) parentPort.postMessage({ id: m.id, error: String((e && e.message) || e), code: e && e.code }); },
    );
    return;
  }
  const job = jobs.get(m.id);
  if (!job) return;
  if (m.op === 'credit') job.credit += m.n;
  else job.cancelled = true;
  const wake = job.wake;
  job.wake = null;
  if (wake) wake();
});

// A chunk leaves only against credit: the reader's pace bounds what is decompressed ahead. It is
// transferred, not copied, so it must own its memory (allocUnsafeSlow: never a slice of the pool).
async function send(job, id, buf, n) {
  while (job.credit <= 0 && !job.cancelled) await new Promise((r) => { job.wake = r; });
  if (job.cancelled) throw new Error('cancelled');
  job.credit--;
  parentPort.postMessage({ id, chunk: buf, n }, [buf.buffer]);
}

// The blob's files in order, through one reused 1 MiB buffer, done with once use() resolves.
// Garbage here is what this thread's heap holds on to: a fresh buffer per read cost a fleet's
// install 30 MB at its peak.
async function eachRead(paths, use) {
  const buf = Buffer.allocUnsafe(1 << 20);
  for (const p of paths) {
    const fh = await fs.promises.open(p, 'r');
    try {
      for (;;) {
        const { bytesRead } = await fh.read(buf, 0, buf.length, null);
        if (bytesRead === 0) break;
        await use(buf.subarray(0, bytesRead));
      }
    } finally {
      await fh.close();
    }
  }
}

async function run(m, job) {
  const hash = createHash('sha256');
  let bytes = 0;
  const emit = async (buf, n) => {
    hash.update(buf.subarray(0, n));
    bytes += n;
    if (bytes > m.size) throw new Error('layer ' + m.diffId + ' is longer than the ' + m.size + ' bytes the manifest says');
    await send(job, m.id, buf, n);
  };
  if (zlib.createZstdDecompress) {
    // node:zlib stops after each output chunk until it is read, and calls back for an input
    // chunk once it has consumed it: one input buffer serves the whole layer.
    const dec = zlib.createZstdDecompress({ chunkSize: OUT });
    const feed = (async () => {
      await eachRead(m.paths, (chunk) => new Promise((resolve, reject) => dec.write(chunk, (e) => (e ? reject(e) : resolve()))));
      dec.end();
    })();
    feed.catch((e) => dec.destroy(e));
    for await (const chunk of dec) {
      const own = Buffer.allocUnsafeSlow(chunk.length);
      chunk.copy(own);
      await emit(own, chunk.length);
    }
    await feed;
  } else {
    // zstd-napi's stream would decompress a whole input chunk at once (50 MiB from 1 MiB of
    // zeros): its context, driven one output chunk at a time, does not (the loop of zstd.ts's
    // boundedDecompressStream, which this thread cannot import).
    const dctx = new zstdNapi.Decompressor().dctx;
    let ret = 0;
    await eachRead(m.paths, async (input) => {
      let rest = input;
      for (;;) {
        const dst = Buffer.allocUnsafeSlow(OUT);
        const r = dctx.decompressStream(dst, rest);
        ret = r[0];
        rest = rest.subarray(r[2]);
        if (r[1] > 0) await emit(dst, r[1]);
        if (rest.length === 0 && (r[1] < OUT || ret === 0)) break;
      }
    });
    if (ret !== 0) throw new Error('layer ' + m.diffId + ': its zstd data ends in the middle of a frame');
  }
  return { digest: 'sha256:' + hash.digest('hex'), bytes };
}
`;

interface Message {
  id: number;
  chunk?: Uint8Array;
  n?: number;
  end?: { digest: string; bytes: number };
  error?: string;
  code?: string;
}

let worker: Worker | undefined;
let nextId = 1;
const readers = new Map<number, (m: Message) => void>();

function theWorker(): Worker {
  if (worker) return worker;
  const zstdNapi = (zlib as { createZstdDecompress?: unknown }).createZstdDecompress ? '' : createRequire(import.meta.url).resolve('zstd-napi');
  const w = new Worker(WORKER_SOURCE, { eval: true, workerData: { zstdNapi } });
  const lost = (why: string) => {
    if (worker === w) worker = undefined;
    for (const [id, deliver] of readers) deliver({ id, error: `the thread that reads the bundle's layers ${why}` });
  };
  w.on('message', (m: Message) => readers.get(m.id)?.(m));
  w.on('error', (e) => lost(`failed: ${e.message}`));
  w.on('exit', (code) => lost(`exited (${code})`));
  // Only a layer being read keeps the process alive (see `w.ref()` below).
  w.unref();
  worker = w;
  return w;
}

/**
 * Starts the thread ahead of the first read: its start-up (~50 ms of a core) then runs beside
 * this thread's own work (the bundle's check, SSH handshakes), not between the hosts being ready
 * and the first byte sent. It keeps nothing alive: without a reader, the thread is unref'd.
 */
export function startLayerReader(): void {
  theWorker();
}

/** The layer's decompressed bytes; the stream fails, before it ends, unless they are exactly the diffID's. */
export function checkedLayerInWorker(paths: string[], diffId: string, size: number): Readable {
  const w = theWorker();
  const id = nextId++;
  let outstanding = WINDOW;
  let waiting = false;
  const grant = (n: number) => {
    if (n <= 0) return;
    outstanding += n;
    w.postMessage({ op: 'credit', id, n });
  };
  const forget = () => {
    if (readers.delete(id) && readers.size === 0) w.unref();
  };
  const out = new Readable({
    highWaterMark: 1 << 20,
    read() {
      if (waiting) {
        waiting = false;
        grant(WINDOW - outstanding);
      }
    },
    destroy(err, cb) {
      if (readers.has(id)) {
        forget();
        w.postMessage({ op: 'cancel', id });
      }
      cb(err);
    },
  });
  readers.set(id, (m) => {
    if (m.chunk) {
      outstanding--;
      // Credit goes back half a window at a time: a message per chunk costs this thread more than the chunk.
      if (!out.push(Buffer.from(m.chunk.buffer, m.chunk.byteOffset, m.n))) waiting = true;
      else if (outstanding <= WINDOW / 2) grant(WINDOW - outstanding);
      return;
    }
    forget();
    const wrong = m.error ? Object.assign(new Error(m.error), m.code ? { code: m.code } : {}) : notTheLayer(diffId, size, m.end!.digest, m.end!.bytes);
    if (wrong) out.destroy(wrong);
    else out.push(null);
  });
  w.ref();
  w.postMessage({ op: 'open', id, paths, diffId, size, credit: WINDOW });
  return out;
}
