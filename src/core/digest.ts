/**
 * Content identity. Layers are identified by their uncompressed digest (diffID) and, because the
 * same diffID on another parent chain is another layer on the host, by their chain ID.
 * Compressed digests differ between engines and compressors and are never identity.
 */
import { createHash } from 'node:crypto';

const DIGEST = /^sha256:[0-9a-f]{64}$/;

export function isDigest(value: unknown): value is string {
  return typeof value === 'string' && DIGEST.test(value);
}

export function hexOf(digest: string): string {
  if (!isDigest(digest)) throw new TypeError(`not a sha256 digest: ${digest}`);
  return digest.slice('sha256:'.length);
}

export function sha256Digest(data: string | Uint8Array): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

/** ChainID(L0) = DiffID(L0); ChainID(Ln) = sha256(ChainID(Ln-1) + " " + DiffID(Ln)), as the OCI image spec defines. */
export function chainIds(diffIds: readonly string[]): string[] {
  const out: string[] = [];
  for (const diffId of diffIds) {
    const parent = out.at(-1);
    out.push(parent === undefined ? diffId : sha256Digest(`${parent} ${diffId}`));
  }
  return out;
}
