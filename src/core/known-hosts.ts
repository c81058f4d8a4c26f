/**
 * OpenSSH known_hosts files (sshd(8) "SSH_KNOWN_HOSTS FILE FORMAT"): which keys a host may present.
 * Plain and hashed (`|1|salt|hmac`) host fields, comma-separated patterns with `*`, `?` and `!`,
 * the `[host]:port` form for ports other than 22, and the @revoked / @cert-authority markers.
 *
 * The verdict mirrors StrictHostKeyChecking: a key listed for the host is trusted; a host with no
 * entries is unknown (the user may choose to add it); a host whose entries name other keys has a
 * CHANGED key, which is never accepted here, whatever the flags: that is the one case where the
 * connection may be intercepted. Pure; the adapter reads and appends the files.
 */
import { createHmac } from 'node:crypto';
import { matchHostPatternList } from './patterns.js';
import { decodeBase64Strict, publicKeyType, sha256Fingerprint, WireFormatError } from './ssh-wire.js';

export interface KnownHostEntry {
  /** Where it came from, for messages: "FILE line N". */
  where: string;
  marker: 'revoked' | 'cert-authority' | null;
  /** The raw host field: "a,b,[c]:2222" or "|1|salt|hash". */
  hosts: string;
  keyType: string;
  key: Buffer;
}

export interface KnownHostsFile {
  path: string;
  text: string;
}

/** Lines that cannot be parsed are skipped, as ssh does; they can never make a key trusted. */
export function parseKnownHosts(file: KnownHostsFile): KnownHostEntry[] {
  const out: KnownHostEntry[] = [];
  file.text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim();
    if (!line || line.startsWith('#')) return;
    const words = line.split(/\s+/);
    let marker: KnownHostEntry['marker'] = null;
    if (words[0]?.startsWith('@')) {
      const m = words.shift()!;
      if (m === '@revoked') marker = 'revoked';
      else if (m === '@cert-authority') marker = 'cert-authority';
      else return;
    }
    const [hosts, keyType, b64] = words;
    if (!hosts || !keyType || !b64) return;
    let key: Buffer;
    try {
      key = decodeBase64Strict(b64, 'known_hosts key');
      if (publicKeyType(key) !== keyType) return;
    } catch (e) {
      if (e instanceof WireFormatError) return;
      throw e;
    }
    out.push({ where: `${file.path} line ${i + 1}`, marker, hosts, keyType, key });
  });
  return out;
}

/** The name known_hosts uses for a host: `host` on port 22, `[host]:port` otherwise. */
export function knownHostName(host: string, port: number): string {
  return port === 22 ? host : `[${host}]:${port}`;
}

/** Does an entry's host field name `name` (already in knownHostName form)? */
export function entryMatches(hosts: string, name: string): boolean {
  if (hosts.startsWith('|1|')) {
    const [, , salt, hash] = hosts.split('|');
    if (!salt || !hash) return false;
    try {
      const mac = createHmac('sha1', Buffer.from(salt, 'base64')).update(name).digest('base64');
      return mac === hash;
    } catch {
      return false;
    }
  }
  return matchHostPatternList(name, hosts.split(','));
}

export type HostKeyVerdict =
  | { kind: 'trusted'; entry: KnownHostEntry }
  | { kind: 'unknown' }
  | { kind: 'changed'; known: KnownHostEntry[] }
  | { kind: 'revoked'; entry: KnownHostEntry };

/** Checks the key a server presented against every entry for `name`. */
export function checkHostKey(entries: KnownHostEntry[], name: string, presented: Buffer): HostKeyVerdict {
  const revoked = entries.find((e) => e.marker === 'revoked' && e.key.equals(presented));
  if (revoked) return { kind: 'revoked', entry: revoked };
  // Certificates are not supported: a CA line neither trusts a plain key nor makes a host known.
  const mine = entries.filter((e) => e.marker === null && entryMatches(e.hosts, name));
  const hit = mine.find((e) => e.key.equals(presented));
  if (hit) return { kind: 'trusted', entry: hit };
  if (mine.length === 0) return { kind: 'unknown' };
  return { kind: 'changed', known: mine };
}

/** Key types listed for the host, so the key exchange can ask for those first (as ssh does). */
export function knownKeyTypes(entries: KnownHostEntry[], name: string): string[] {
  const types = entries.filter((e) => e.marker === null && entryMatches(e.hosts, name)).map((e) => e.keyType);
  return [...new Set(types)];
}

/** The line `--accept-new-host-key` appends: plain, so an operator can read and audit it. */
export function knownHostsLine(name: string, key: Buffer): string {
  return `${name} ${publicKeyType(key)} ${key.toString('base64')}`;
}

export function fingerprint(key: Buffer): string {
  return sha256Fingerprint(key);
}
