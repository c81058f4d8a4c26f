/**
 * ferry's bundle manifest (`ferry.json`): the one signed document. It names every other file of
 * the bundle with its size and sha256, so checking the signature and then each file authenticates
 * the whole bundle. It is parsed defensively: it arrives on a stick anyone may have touched.
 */
import { JsonChecker } from './json-checker.js';
import { safeRelativePathProblem } from './paths.js';
import { SUMS_FILE, SUMS_SIGNATURE_FILE } from './sha256sums.js';
import { DELTA_MEDIA_TYPE } from './layer-delta.js';

export const MANIFEST_FORMAT = 'ferry.bundle/v1';
export const MANIFEST_FILE = 'ferry.json';
export const SIGNATURE_FILE = 'ferry.json.sig';
/** A manifest larger than this is refused before it is parsed. */
export const MAX_MANIFEST_BYTES = 32 * 1024 * 1024;
/** FAT32, still the default on many USB sticks, cannot hold a file of 4 GiB or more. */
export const FAT32_MAX_FILE = 4 * 1024 ** 3 - 1;
export const DEFAULT_MAX_PART_SIZE = 4 * 1024 ** 3 - 64 * 1024 ** 2;
export const LAYER_MEDIA_TYPE = 'application/vnd.oci.image.layer.v1.tar+zstd';
/** Image configs, OCI manifests and compose-side files are read whole into memory on hosts. */
export const MAX_SMALL_FILE = 16 * 1024 * 1024;

export interface FileEntry {
  path: string;
  size: number;
  sha256: string;
}

export interface BlobPart {
  path: string;
  size: number;
  sha256: string;
}

export interface LayerBlob {
  digest: string;
  size: number;
  mediaType: string;
  /** Where the blob lives: one file, or several parts to concatenate in order. */
  path?: string;
  parts?: BlobPart[];
}

/** A blob's files, relative to the bundle, in the order their bytes concatenate. */
export function blobPaths(blob: LayerBlob): string[] {
  return blob.parts ? blob.parts.map((p) => p.path) : [blob.path!];
}

export interface ManifestLayer {
  diffId: string;
  chainId: string;
  /** Uncompressed size. */
  size: number;
  /** Whether the bundle ships this layer, whole (blob) or as a delta; false: assumed, every base holds it. */
  included: boolean;
  blob: LayerBlob | null;
  /** Shipped as a delta against a layer every base holds (blob is then null). */
  delta?: LayerDelta;
}

/** A layer delta's file (stored as blobs are) and the held layer it is rebuilt from. */
export interface LayerDelta extends LayerBlob {
  /** The diffID of the reference layer, which the host's engine gives back byte for byte. */
  reference: string;
  /** Bytes of the reference's tar. */
  referenceSize: number;
  /** What the layer's whole zstd blob would have been (informational: the saving inspect shows). */
  wholeSize?: number;
}

export interface ManifestImage {
  /** The references the definition named this image by (compose service images, extra images). */
  refs: string[];
  /** The pinned image ID: the digest of its config. */
  id: string;
  os: string;
  architecture: string;
  config: { path: string; size: number };
  ociManifest: { digest: string; size: number; path: string };
  layers: ManifestLayer[];
}

export interface ManifestService {
  name: string;
  image: string;
  imageId: string;
}

export interface ManifestBase {
  kind: 'inventory' | 'bundle';
  name: string;
  digest: string;
  /** Chain IDs that base holds; layers every base holds are left out of the bundle. */
  held: string[];
}

export interface FerryManifest {
  format: typeof MANIFEST_FORMAT;
  name: string;
  version: string;
  sequence: number;
  created: string;
  expires: string | null;
  tool: { name: string; version: string };
  compose: {
    file: string;
    smoke: string | null;
    services: ManifestService[];
    /** Project files the stack reads (bind sources, secrets, configs), carried under compose/project/. */
    projectFiles?: ManifestProjectFile[];
    /** Paths on the host the stack reads; install checks they exist before switching. */
    hostPaths?: ManifestHostPath[];
  };
  hosts: Record<string, { files: string[] }>;
  images: ManifestImage[];
  /** What the targets were known to hold when the bundle was made; empty for a full bundle. */
  bases: ManifestBase[];
  files: FileEntry[];
  /** The ferry executable the bundle carries (bundle create --with-ferry), run from the stick. */
  ferry?: ManifestExecutable;
}

export interface ManifestExecutable {
  /** Always EXECUTABLE_FILE: the operator runs ./ferry from the bundle's root. */
  path: string;
  /** What it says it is (`ferry --version`). */
  version: string;
  /** sha256:<hex> of the file, as its files entry lists it. */
  sha256: string;
  size: number;
}

/** Where a bundle carries the ferry executable. */
export const EXECUTABLE_FILE = 'ferry';

export interface ManifestProjectFile {
  /** Bundle path (listed in files). */
  path: string;
  kind: 'bind' | 'secret' | 'config' | 'env_file' | 'source';
  services: string[];
}

export interface ManifestHostPath {
  /** Absolute path on the host. */
  path: string;
  kind: 'bind' | 'secret' | 'config' | 'env_file' | 'source';
  services: string[];
  /** A secret the bundle was made without (--exclude-secrets): the host must provide it. */
  excludedSecret?: boolean;
}

const PROJECT_FILE_KINDS = new Set(['bind', 'secret', 'config', 'env_file', 'source']);

export function serializeManifest(manifest: FerryManifest): Buffer {
  return Buffer.from(`${JSON.stringify(manifest, null, 2)}\n`, 'utf8');
}

/** Problems kept in an error: a hostile manifest can have millions, and they end up in --json. */
const MAX_PROBLEMS = 100;

/** A manifest that fails validation; `problems` lists the fields at fault (the first 100). */
export class ManifestInvalid extends Error {
  readonly problems: string[];

  constructor(all: string[]) {
    const problems = all.length > MAX_PROBLEMS ? [...all.slice(0, MAX_PROBLEMS), `… and ${all.length - MAX_PROBLEMS} more problems`] : all;
    super(`the bundle manifest is invalid: ${problems.slice(0, 5).join('; ')}${all.length > 5 ? ` (+${all.length - 5} more)` : ''}`);
    this.problems = problems;
  }
}

/** A short, safe description of an untrusted value for a message: never recursive, never long. */
function describeValue(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.length > 80 ? `${value.slice(0, 80)}…` : value);
  if (value === null || typeof value === 'number' || typeof value === 'boolean') return String(value);
  if (Array.isArray(value)) return `an array of ${value.length}`;
  return typeof value === 'object' ? 'an object' : typeof value;
}

const NAME = /^[a-z0-9][a-z0-9_-]{0,62}$/;
const VERSION = /^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$/;
const HOST = /^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$/;
const ISO_UTC = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,3})?Z$/;

/** Far deeper than any manifest (about 7 levels); what walks a parsed document may recurse. */
export const MAX_JSON_DEPTH = 64;
/** Objects and arrays in one manifest: 200 000 files need about as many; more is junk. */
export const MAX_JSON_CONTAINERS = 1_000_000;

/**
 * Nesting depth and the number of objects and arrays in JSON text, counted without building it.
 * JSON.parse copes with any depth, but code that walks the result (JSON.stringify, String())
 * recurses and overflows the stack, and millions of empty objects cost far more memory than the
 * bytes that describe them. Brackets inside strings are skipped; the text need not be valid JSON.
 */
export function jsonShapeProblem(text: string): string | undefined {
  let depth = 0;
  let containers = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++;
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) {
      inString = true;
    } else if (c === 0x7b || c === 0x5b) {
      if (++depth > MAX_JSON_DEPTH) return `nests deeper than ${MAX_JSON_DEPTH} levels`;
      if (++containers > MAX_JSON_CONTAINERS) return `holds more than ${MAX_JSON_CONTAINERS} objects and arrays`;
    } else if (c === 0x7d || c === 0x5d) {
      depth--;
    }
  }
  return undefined;
}

const STRICT_UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** Validates untrusted JSON into a manifest, collecting all problems before failing. */
export function parseManifest(bytes: Buffer): FerryManifest {
  if (bytes.length > MAX_MANIFEST_BYTES) throw new ManifestInvalid([`larger than ${MAX_MANIFEST_BYTES} bytes`]);
  let text: string;
  try {
    // Lenient decoding would turn different byte strings into the same text.
    text = STRICT_UTF8.decode(bytes);
  } catch {
    throw new ManifestInvalid(['not valid UTF-8']);
  }
  const shape = jsonShapeProblem(text);
  if (shape) throw new ManifestInvalid([`the document ${shape}`]);
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    throw new ManifestInvalid([`not JSON: ${(e as Error).message.slice(0, 200)}`]);
  }
  const problems: string[] = [];
  const v = new Checker(problems);
  const m = v.object(doc, '');
  if (!m) throw new ManifestInvalid(problems);
  if (m.format !== MANIFEST_FORMAT) problems.push(`format is ${describeValue(m.format)}, this ferry reads ${MANIFEST_FORMAT}`);
  v.match(m.name, 'name', NAME);
  v.match(m.version, 'version', VERSION);
  v.integer(m.sequence, 'sequence');
  v.date(m.created, 'created');
  if (m.expires !== null) v.date(m.expires, 'expires');
  const tool = v.object(m.tool, 'tool');
  if (tool) {
    v.string(tool.name, 'tool.name');
    v.string(tool.version, 'tool.version');
  }

  const files = v.array(m.files, 'files', 200_000) ?? [];
  const seen = new Set<string>();
  files.forEach((f, i) => {
    const e = v.object(f, `files[${i}]`);
    if (!e) return;
    const safe = v.path(e.path, `files[${i}].path`);
    v.size(e.size, `files[${i}].size`);
    v.hex(e.sha256, `files[${i}].sha256`);
    if (typeof e.path === 'string') {
      if (seen.has(e.path)) problems.push(`files[${i}].path ${describeValue(e.path)} is listed twice`);
      seen.add(e.path);
      // These four sign or list the listing itself; they are never part of it.
      if (e.path === MANIFEST_FILE || e.path === SIGNATURE_FILE || e.path === SUMS_FILE || e.path === SUMS_SIGNATURE_FILE) problems.push(`files[${i}].path may not name ${e.path}`);
      // Read whole into memory on the host (compose files, env files): bounded here, before anything is read.
      if (safe && e.path.startsWith('compose/') && typeof e.size === 'number' && e.size > MAX_SMALL_FILE) problems.push(`files[${i}] ${e.path} is ${e.size} bytes, more than ${MAX_SMALL_FILE} for a compose-side file`);
    }
  });
  const listed = (p: unknown, where: string) => {
    if (v.path(p, where) && !seen.has(p as string)) problems.push(`${where} ${String(p)} is not in files`);
  };

  const compose = v.object(m.compose, 'compose');
  if (compose) {
    listed(compose.file, 'compose.file');
    if (compose.smoke !== null) v.string(compose.smoke, 'compose.smoke');
    (v.array(compose.services, 'compose.services', 1000) ?? []).forEach((s, i) => {
      const svc = v.object(s, `compose.services[${i}]`);
      if (!svc) return;
      v.string(svc.name, `compose.services[${i}].name`);
      v.string(svc.image, `compose.services[${i}].image`);
      v.digest(svc.imageId, `compose.services[${i}].imageId`);
    });
    if (compose.projectFiles !== undefined) {
      (v.array(compose.projectFiles, 'compose.projectFiles', 100_000) ?? []).forEach((f, i) => {
        const e = v.object(f, `compose.projectFiles[${i}]`);
        if (!e) return;
        listed(e.path, `compose.projectFiles[${i}].path`);
        if (typeof e.path === 'string' && !e.path.startsWith('compose/')) problems.push(`compose.projectFiles[${i}].path must be under compose/`);
        if (!PROJECT_FILE_KINDS.has(e.kind as string)) problems.push(`compose.projectFiles[${i}].kind is not one of ${[...PROJECT_FILE_KINDS].join(', ')}`);
      });
    }
    if (compose.hostPaths !== undefined) {
      (v.array(compose.hostPaths, 'compose.hostPaths', 10_000) ?? []).forEach((h, i) => {
        const e = v.object(h, `compose.hostPaths[${i}]`);
        if (!e) return;
        if (v.string(e.path, `compose.hostPaths[${i}].path`) && !(e.path as string).startsWith('/')) problems.push(`compose.hostPaths[${i}].path must be absolute`);
        if (!PROJECT_FILE_KINDS.has(e.kind as string)) problems.push(`compose.hostPaths[${i}].kind is not one of ${[...PROJECT_FILE_KINDS].join(', ')}`);
      });
    }
  }
  if (m.ferry !== undefined) {
    const exe = v.object(m.ferry, 'ferry');
    if (exe) {
      if (exe.path !== EXECUTABLE_FILE) problems.push(`ferry.path must be ${JSON.stringify(EXECUTABLE_FILE)}`);
      v.string(exe.version, 'ferry.version');
      v.digest(exe.sha256, 'ferry.sha256');
      v.size(exe.size, 'ferry.size');
      const entry = (files as { path?: unknown; sha256?: unknown; size?: unknown }[]).find((f) => f && f.path === EXECUTABLE_FILE);
      // The files entry is what verify checks: the two must describe the same bytes.
      if (!entry) problems.push(`ferry.path ${EXECUTABLE_FILE} is not in files`);
      else if (`sha256:${String(entry.sha256)}` !== exe.sha256 || entry.size !== exe.size) problems.push('ferry.sha256 and ferry.size differ from its files entry');
    }
  }
  const hosts = v.object(m.hosts, 'hosts');
  const hostCount = hosts ? Object.keys(hosts).length : 0;
  if (hostCount > 1000) problems.push(`hosts has ${hostCount} entries, more than 1000`);
  else if (hosts) {
    for (const [host, entry] of Object.entries(hosts)) {
      if (!HOST.test(host)) {
        problems.push(`hosts: ${describeValue(host)} is not a valid host name`);
        continue;
      }
      const h = v.object(entry, `hosts.${host}`);
      if (h) (v.array(h.files, `hosts.${host}.files`, 100) ?? []).forEach((p, i) => listed(p, `hosts.${host}.files[${i}]`));
    }
  }

  (v.array(m.images, 'images', 1000) ?? []).forEach((img, i) => {
    const at = `images[${i}]`;
    const im = v.object(img, at);
    if (!im) return;
    (v.array(im.refs, `${at}.refs`, 100) ?? []).forEach((r, j) => v.string(r, `${at}.refs[${j}]`));
    v.digest(im.id, `${at}.id`);
    v.string(im.os, `${at}.os`);
    v.string(im.architecture, `${at}.architecture`);
    const config = v.object(im.config, `${at}.config`);
    if (config) {
      listed(config.path, `${at}.config.path`);
      // Install reads the config whole into memory: bound it before any allocation.
      if (v.size(config.size, `${at}.config.size`) && (config.size as number) > MAX_SMALL_FILE) problems.push(`${at}.config.size ${String(config.size)} is more than ${MAX_SMALL_FILE}`);
    }
    const om = v.object(im.ociManifest, `${at}.ociManifest`);
    if (om) {
      v.digest(om.digest, `${at}.ociManifest.digest`);
      if (v.size(om.size, `${at}.ociManifest.size`) && (om.size as number) > MAX_SMALL_FILE) problems.push(`${at}.ociManifest.size ${String(om.size)} is more than ${MAX_SMALL_FILE}`);
      listed(om.path, `${at}.ociManifest.path`);
    }
    // A whole layer's blob and a delta are stored alike: one file, or parts in order.
    const checkBlob = (value: unknown, bat: string): Record<string, unknown> | undefined => {
      const blob = v.object(value, bat);
      if (!blob) return undefined;
      v.digest(blob.digest, `${bat}.digest`);
      v.size(blob.size, `${bat}.size`);
      v.string(blob.mediaType, `${bat}.mediaType`);
      if ((blob.path === undefined) === (blob.parts === undefined)) {
        problems.push(`${bat} needs exactly one of path or parts`);
      } else if (blob.path !== undefined) {
        listed(blob.path, `${bat}.path`);
      } else {
        const parts = v.array(blob.parts, `${bat}.parts`, 10_000) ?? [];
        let total = 0;
        parts.forEach((p, k) => {
          const part = v.object(p, `${bat}.parts[${k}]`);
          if (!part) return;
          listed(part.path, `${bat}.parts[${k}].path`);
          if (v.size(part.size, `${bat}.parts[${k}].size`)) total += part.size as number;
          v.hex(part.sha256, `${bat}.parts[${k}].sha256`);
        });
        if (parts.length < 2) problems.push(`${bat}.parts must have at least two parts`);
        if (typeof blob.size === 'number' && total !== blob.size) problems.push(`${bat}.parts sizes add up to ${total}, not ${blob.size}`);
      }
      return blob;
    };
    (v.array(im.layers, `${at}.layers`, 1000) ?? []).forEach((l, j) => {
      const lat = `${at}.layers[${j}]`;
      const layer = v.object(l, lat);
      if (!layer) return;
      v.digest(layer.diffId, `${lat}.diffId`);
      v.digest(layer.chainId, `${lat}.chainId`);
      v.size(layer.size, `${lat}.size`);
      if (typeof layer.included !== 'boolean') problems.push(`${lat}.included must be true or false`);
      const hasDelta = layer.delta !== undefined && layer.delta !== null;
      if (layer.blob === null || layer.blob === undefined) {
        if (layer.included === true && !hasDelta) problems.push(`${lat}.blob is missing for an included layer`);
      } else {
        if (hasDelta) problems.push(`${lat} has both a blob and a delta`);
        checkBlob(layer.blob, `${lat}.blob`);
      }
      if (!hasDelta) return;
      if (layer.included !== true) problems.push(`${lat}.delta is given for a layer the bundle does not include`);
      const delta = checkBlob(layer.delta, `${lat}.delta`);
      if (!delta) return;
      if (v.digest(delta.reference, `${lat}.delta.reference`) && delta.reference === layer.diffId) problems.push(`${lat}.delta.reference is the layer itself`);
      v.size(delta.referenceSize, `${lat}.delta.referenceSize`);
      if (delta.wholeSize !== undefined) v.size(delta.wholeSize, `${lat}.delta.wholeSize`);
      if (delta.mediaType !== DELTA_MEDIA_TYPE) problems.push(`${lat}.delta.mediaType must be ${DELTA_MEDIA_TYPE}`);
    });
  });

  if (m.bases === undefined) m.bases = [];
  (v.array(m.bases, 'bases', 100) ?? []).forEach((b, i) => {
    const base = v.object(b, `bases[${i}]`);
    if (!base) return;
    if (base.kind !== 'inventory' && base.kind !== 'bundle') problems.push(`bases[${i}].kind must be "inventory" or "bundle"`);
    v.string(base.name, `bases[${i}].name`);
    v.digest(base.digest, `bases[${i}].digest`);
    (v.array(base.held, `bases[${i}].held`, 1_000_000) ?? []).forEach((h, j) => v.digest(h, `bases[${i}].held[${j}]`));
  });

  if (problems.length > 0) throw new ManifestInvalid(problems);
  return doc as FerryManifest;
}

/** The manifest's own rules on top of the shared checks: strict dates, hex, safe paths. */
class Checker extends JsonChecker {
  constructor(problems: string[]) {
    super(problems, MAX_PROBLEMS * 10);
  }

  match(value: unknown, where: string, re: RegExp): boolean {
    return (typeof value === 'string' && re.test(value)) || this.fail(where, `must match ${re}`);
  }

  size(value: unknown, where: string): boolean {
    return this.integer(value, where);
  }

  /**
   * UTC in the one form create writes (toISOString), so that dates compare correctly as strings
   * and no reader's lenient date parsing can see another instant than ours.
   */
  date(value: unknown, where: string): boolean {
    return (typeof value === 'string' && ISO_UTC.test(value) && !Number.isNaN(Date.parse(value))) || this.fail(where, 'must be a UTC date like 2026-01-31T12:00:00.000Z');
  }

  hex(value: unknown, where: string): boolean {
    return (typeof value === 'string' && /^[0-9a-f]{64}$/.test(value)) || this.fail(where, 'must be 64 lowercase hex digits');
  }

  path(value: unknown, where: string): boolean {
    const problem = safeRelativePathProblem(value);
    return problem === undefined || this.fail(where, `is not a safe bundle path: it ${problem}`);
  }
}
