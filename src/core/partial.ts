/**
 * Names of the directories create writes a bundle into before the final rename:
 * `<bundle>.partial-<host>-<pid>-<time>`. The host and pid say whose it is, so a later create on the
 * same machine can tell a partial whose process died (a SIGKILL, a power cut) from one being
 * written right now, also by another machine onto a shared stick.
 */

export interface PartialName {
  bundle: string;
  host: string;
  pid: number;
}

/** Host names may hold dashes and dots, never a slash; ferry's own part is the last two fields. */
const PARTIAL = /^(.+)\.partial-(.+)-(\d+)-([0-9a-z]+)$/;

export function partialName(bundle: string, host: string, pid: number, now: number): string {
  return `${bundle}.partial-${safeHost(host)}-${pid}-${now.toString(36)}`;
}

/** null: not a partial of this naming (older ferries named partials without the host: left alone). */
export function parsePartialName(name: string): PartialName | null {
  const m = PARTIAL.exec(name);
  if (!m) return null;
  const pid = Number(m[3]);
  if (!Number.isSafeInteger(pid) || pid <= 0) return null;
  return { bundle: m[1]!, host: m[2]!, pid };
}

function safeHost(host: string): string {
  return host.replace(/[^A-Za-z0-9._-]/g, '_') || 'host';
}

/** The same host as partialName writes it, to compare with a parsed name. */
export function partialHost(host: string): string {
  return safeHost(host);
}
