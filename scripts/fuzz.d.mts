// Types for scripts/fuzz.mjs, so the TypeScript tests can drive the same harness.
export interface FuzzTargetResult {
  cases: number;
  accepted: number;
  refused: number;
  crashes: { case: number; error: string }[];
  slowestMs: number;
}

export interface FuzzOptions {
  seed: string;
  budgetMs?: number;
  cases?: number;
  only?: string[];
  onlyCase?: number;
  dump?: string;
  log?: (line: string) => void;
}

/** `api` holds the functions under test, from src/ (tests) or dist/ (npm run fuzz). */
export function fuzz(api: Record<string, unknown>, options: FuzzOptions): Promise<Record<string, FuzzTargetResult>>;

export function rng(seed: string): {
  float(): number;
  int(n: number): number;
  chance(p: number): boolean;
  pick<T>(list: readonly T[]): T;
  bytes(n: number): Buffer;
};

export function mutateBytes(r: ReturnType<typeof rng>, input: Uint8Array): Buffer;
export function mutateJson(r: ReturnType<typeof rng>, doc: unknown): Buffer;
export const TARGETS: Record<string, unknown>;
