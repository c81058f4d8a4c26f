/**
 * What a host remembers per stack: the releases it installed, which one is current, and the
 * highest sequence and newest creation time it has accepted (the rollback-protection ratchet).
 * Pure model and transitions; the state store adapter persists it atomically.
 */

export const STATE_FORMAT = 'ferry.state/v1';
export const DEFAULT_STATE_DIR = '/var/lib/ferry';
export const DEFAULT_KEEP = 3;

export interface ReleaseRecord {
  /** `<sequence>-<version>`: sortable and readable in a directory listing. */
  id: string;
  version: string;
  sequence: number;
  created: string;
  installedAt: string;
  host: string;
  /** Image IDs the release runs, and the ferry-owned tags that point at them. */
  images: { id: string; tag: string }[];
  services: { name: string; imageId: string }[];
  /** Compose files, relative to the release directory, in -f order (ferry's pinning override last). */
  composeFiles: string[];
  smoke: string | null;
  /**
   * Absent or "in-place": the stack is one compose project. "blue-green": the front and shared
   * services run in the project named after the stack, the others in STACK-<colour>.
   */
  switch?: 'in-place' | 'blue-green';
  front?: string[];
  shared?: string[];
  /** Blue/green: the colour this release last ran as. */
  colour?: 'blue' | 'green';
  signer: { fingerprint: string; principals: string[] } | null;
  /** Summary of the verification that admitted this release; the full report is in its directory. */
  verification?: VerificationSummary;
  result: 'installed' | 'failed' | 'rolled-back-to';
}

export interface VerificationSummary {
  at: string;
  /** The file the report is in, relative to the release directory. */
  report: string;
  manifestSha256: string;
  trustFile: string | null;
  files: number;
  bytes: number;
  staged: boolean;
}

/** Evidence kept per install: who signed, which files with which digests were checked, when. */
export interface VerificationReport {
  format: 'ferry.verification/v1';
  at: string;
  bundle: string;
  stack: string;
  release: string;
  manifestSha256: string;
  signature: { fingerprint: string; principals: string[]; publicKey: string; namespace: string } | null;
  trustFile: string | null;
  unsignedAccepted: boolean;
  staged: boolean;
  files: { path: string; size: number; sha256: string }[];
}

export interface StackState {
  format: typeof STATE_FORMAT;
  stack: string;
  current: string | null;
  highestSequence: number;
  newestCreated: string | null;
  releases: ReleaseRecord[];
}

export function emptyStackState(stack: string): StackState {
  return { format: STATE_FORMAT, stack, current: null, highestSequence: -1, newestCreated: null, releases: [] };
}

export function releaseId(sequence: number, version: string): string {
  return `${sequence}-${version}`;
}

/** The ferry-owned tag for an image ID: unique per ID, so no other image can hide behind it. */
export function ferryTag(stack: string, imageId: string): string {
  return `ferry.local/${stack}:${imageId.slice('sha256:'.length)}`;
}

export function currentRelease(state: StackState): ReleaseRecord | undefined {
  return state.releases.find((r) => r.id === state.current);
}

/** Records a successful install: it becomes current, the ratchet moves, old releases are pruned. */
export function recordInstalled(state: StackState, release: ReleaseRecord, keep: number): { state: StackState; pruned: ReleaseRecord[] } {
  const others = state.releases.filter((r) => r.id !== release.id);
  const releases = [...others, release].sort((a, b) => a.sequence - b.sequence);
  const kept = releases.slice(-Math.max(1, keep));
  const pruned = releases.filter((r) => !kept.includes(r));
  return {
    state: {
      ...state,
      current: release.id,
      highestSequence: Math.max(state.highestSequence, release.sequence),
      newestCreated: !state.newestCreated || release.created > state.newestCreated ? release.created : state.newestCreated,
      releases: kept,
    },
    pruned,
  };
}

/** Image IDs that a set of pruned releases used and no kept release uses: safe to remove. */
export function imagesToRemove(state: StackState, pruned: ReleaseRecord[]): { id: string; tag: string }[] {
  const inUse = new Set(state.releases.flatMap((r) => r.images.map((i) => i.id)));
  const out = new Map<string, { id: string; tag: string }>();
  for (const r of pruned) for (const i of r.images) if (!inUse.has(i.id)) out.set(i.id, i);
  return [...out.values()];
}

export function validateStackState(doc: unknown, stack: string): StackState {
  const d = doc as Partial<StackState> | null;
  if (!d || d.format !== STATE_FORMAT || d.stack !== stack || !Array.isArray(d.releases) || typeof d.highestSequence !== 'number') {
    throw new Error(`state for stack ${stack} is not in the ${STATE_FORMAT} format`);
  }
  return d as StackState;
}
