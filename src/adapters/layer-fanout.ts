/**
 * One decompression and one diffID check per layer, however many engines load it at once (a
 * swarm's nodes). Each load asks for a layer's bytes as its archive reaches it; the layer is read
 * once, and every chunk goes to every load that asked, at the pace of the slowest (no copy of a
 * layer is kept anywhere: memory stays at a chunk per load).
 *
 * A layer starts once every load that will want it has asked: each load declares, as its archive
 * begins, which layers it will take from the bundle and in what order, and the loads take them in
 * one order (`rank`), so none waits on a layer another will only ask for later. What can still go
 * wrong is a load that stalls or never asks: after `patienceMs` a layer starts with those that
 * asked, and one who asks after the start reads the layer alone — the same bytes, at the cost the
 * fan-out was there to save, never a wait without end.
 */
import { PassThrough, Readable, Transform, type TransformCallback } from 'node:stream';
import { createHash } from 'node:crypto';
import type { LayerBlob } from '../core/manifest.js';

/** A layer as a load takes it from the bundle. */
export interface FanoutLayer {
  diffId: string;
  size: number;
  blob: LayerBlob;
}

interface Producer {
  layer: FanoutLayer;
  /** Loads that asked for it, with their streams; filled until the layer starts. */
  joined: Map<string, { out: PassThrough; onBytes?: (n: number) => void }>;
  started: boolean;
  timer?: NodeJS.Timeout;
}

export class LayerFanout {
  private readonly declared = new Map<string, Set<string>>();
  private readonly gone = new Set<string>();
  /** Loads that declared twice (a second attempt): they read every layer alone. */
  private readonly alone = new Set<string>();
  private readonly producers = new Map<string, Producer>();
  /** Layers read so far, and how many loads each fed: what the fan-out saved. */
  readonly stats = { layers: 0, reads: 0, fed: 0, alone: 0 };

  /**
   * `loads`: how many loads share the bundle (each must declare or leave); `read(layer)`: the
   * layer's bytes, decompressed and checked against its diffID (src/adapters/layer-reader.ts does
   * it on a worker thread); `rank`: the one order every load takes its layers in.
   */
  constructor(
    private readonly loads: number,
    private readonly read: (layer: FanoutLayer) => Readable,
    readonly rank: (diffId: string) => number,
    private readonly patienceMs = 30_000,
  ) {}

  /** The layers `load` will take from the bundle. A load that declares twice reads alone. */
  declare(load: string, diffIds: string[]): void {
    if (this.declared.has(load)) this.alone.add(load);
    else this.declared.set(load, new Set(diffIds));
    this.poke();
  }

  /** `load` will ask for nothing more (done, failed, or nothing to load): no layer waits for it. */
  leave(load: string): void {
    this.gone.add(load);
    for (const p of this.producers.values()) p.joined.get(load)?.out.destroy();
    this.poke();
  }

  /** The layer's decompressed, checked bytes for `load`; a mismatch with the diffID fails the stream. */
  layer(load: string, layer: FanoutLayer, onBytes?: (n: number) => void): Readable {
    const existing = this.producers.get(layer.diffId);
    if (this.alone.has(load) || this.gone.has(load) || existing?.started) return this.readAlone(layer, onBytes);
    const out = new PassThrough({ highWaterMark: 1 << 20 });
    const producer: Producer = existing ?? { layer, joined: new Map(), started: false };
    producer.joined.set(load, { out, ...(onBytes ? { onBytes } : {}) });
    if (!existing) {
      this.producers.set(layer.diffId, producer);
      producer.timer = setTimeout(() => this.start(producer), this.patienceMs);
      producer.timer.unref();
    }
    this.poke();
    return out;
  }

  /** Starts every layer whose loads have all asked for it. */
  private poke(): void {
    const everyoneDeclared = this.declared.size + [...this.gone].filter((l) => !this.declared.has(l)).length >= this.loads;
    for (const p of this.producers.values()) {
      if (p.started || !everyoneDeclared) continue;
      const waitingFor = [...this.declared].filter(([load, wants]) => wants.has(p.layer.diffId) && !this.gone.has(load) && !this.alone.has(load) && !p.joined.has(load));
      if (waitingFor.length === 0) this.start(p);
    }
  }

  private start(p: Producer): void {
    if (p.started) return;
    p.started = true;
    clearTimeout(p.timer);
    const outs = [...p.joined.values()];
    if (outs.length === 0) return;
    this.stats.layers++;
    this.stats.fed += outs.length;
    void this.feed(p, outs);
  }

  private async feed(p: Producer, outs: { out: PassThrough; onBytes?: (n: number) => void }[]): Promise<void> {
    try {
      const source = this.checked(p.layer);
      for await (const chunk of source as AsyncIterable<Buffer>) {
        const live = outs.filter((o) => !o.out.destroyed);
        if (live.length === 0) {
          source.destroy();
          return;
        }
        const full = live.filter((o) => {
          o.onBytes?.(chunk.length);
          return !o.out.write(chunk);
        });
        // The slowest load sets the pace: nothing is buffered for it beyond its own stream.
        await Promise.all(full.map((o) => new Promise<void>((resolve) => {
          const done = () => {
            o.out.off('drain', done);
            o.out.off('close', done);
            resolve();
          };
          o.out.on('drain', done);
          o.out.on('close', done);
        })));
      }
      for (const o of outs) o.out.end();
    } catch (e) {
      for (const o of outs) o.out.destroy(e as Error);
    }
    // The producer stays (started): a load asking for the layer from now on reads it alone.
  }

  private readAlone(layer: FanoutLayer, onBytes?: (n: number) => void): Readable {
    this.stats.alone++;
    const out = new PassThrough({ highWaterMark: 1 << 20 });
    const source = this.checked(layer);
    source.on('error', (e) => out.destroy(e));
    // A load that gives up must not leave the read waiting for it (a worker thread would keep the process alive).
    out.on('close', () => source.destroy());
    if (onBytes) source.on('data', (c: Buffer) => onBytes(c.length));
    source.pipe(out);
    return out;
  }

  private checked(layer: FanoutLayer): Readable {
    this.stats.reads++;
    return this.read(layer);
  }
}

/** Hashes what passes and fails the stream, before its end, unless it is exactly the layer. */
export class DiffIdCheck extends Transform {
  private readonly hash = createHash('sha256');
  private bytes = 0;

  constructor(
    private readonly diffId: string,
    private readonly size: number,
    private readonly onBytes?: (n: number, diffId: string) => void,
  ) {
    super();
  }

  override _transform(chunk: Buffer, _e: BufferEncoding, cb: TransformCallback): void {
    this.hash.update(chunk);
    this.bytes += chunk.length;
    this.onBytes?.(chunk.length, this.diffId);
    if (this.bytes > this.size) return cb(new Error(`layer ${this.diffId} is longer than the ${this.size} bytes the manifest says`));
    cb(null, chunk);
  }

  override _flush(cb: TransformCallback): void {
    cb(notTheLayer(this.diffId, this.size, `sha256:${this.hash.digest('hex')}`, this.bytes));
  }
}

/** The error for bytes that are not the layer the manifest names, or null when they are. */
export function notTheLayer(diffId: string, size: number, got: string, bytes: number): Error | null {
  return got === diffId && bytes === size ? null : new Error(`layer ${diffId} decompressed to ${got} (${bytes} bytes): refusing to load it`);
}
