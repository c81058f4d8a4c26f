/**
 * Every error an SSH connection can end in, built in one place so that each names the host, what it
 * presented or refused, and what the operator can do next.
 */
import { fingerprint, type KnownHostEntry } from '../core/known-hosts.js';
import { HostPreconditionError, TrustError } from '../errors.js';
import type { Credentials } from './ssh-auth.js';

/** The same shape as ssh-host-keys' PresentedKey; named here to keep this module free of cycles. */
interface Presented {
  type: string;
  fingerprint: string;
}

export function noIdentity(label: string, host: string, skipped: string[]): HostPreconditionError {
  return new HostPreconditionError('SSH_NO_IDENTITY', `no key to log in to ${label} with: no --identity, no SSH agent (SSH_AUTH_SOCK), no IdentityFile and no ~/.ssh/id_ed25519 or id_rsa`, {
    hint: `Pass --identity KEYFILE, start ssh-agent and ssh-add a key, or name an IdentityFile for ${host} in ~/.ssh/config.${skipped.length ? ` Skipped: ${skipped.join('; ')}.` : ''}`,
    details: { host: label, skipped },
  });
}

export function hostKeyRevoked(label: string, key: Presented, entry: KnownHostEntry): TrustError {
  return new TrustError('HOST_KEY_REVOKED', `${label} presented the ${key.type} key ${key.fingerprint}, which ${entry.where} marks as REVOKED: refusing to connect`, {
    details: { host: label, keyType: key.type, fingerprint: key.fingerprint, entry: entry.where },
    hint: 'Ask the host\'s administrator for its current key.',
  });
}

export function hostKeyChanged(label: string, khName: string, key: Presented, known: KnownHostEntry[]): TrustError {
  const listed = known.map((e) => `${e.keyType} ${fingerprint(e.key)} (${e.where})`);
  return new TrustError(
    'HOST_KEY_CHANGED',
    `WARNING: THE HOST KEY OF ${label} HAS CHANGED. It presented ${key.type} ${key.fingerprint}, but known_hosts lists ${listed.join(', ')}. ` +
      'Someone may be intercepting this connection (man-in-the-middle), or the host was reinstalled. ferry refuses to connect; --accept-new-host-key never accepts a changed key.',
    {
      details: { host: label, knownHostsName: khName, keyType: key.type, fingerprint: key.fingerprint, known: known.map((e) => ({ keyType: e.keyType, fingerprint: fingerprint(e.key), where: e.where })) },
      hint: `Confirm the new fingerprint with the host's administrator (ssh-keygen -lf /etc/ssh/ssh_host_${key.type.replace(/^ssh-/, '').replace(/-.*$/, '')}_key.pub on the host). If it is right, remove the old entry with \`ssh-keygen -R '${khName}' -f ${known[0]!.where.replace(/ line \d+$/, '')}\` and connect again.`,
    },
  );
}

export function hostKeyUnknown(label: string, khName: string, key: Presented, known: { files: string[]; appendTo: string }): HostPreconditionError {
  return new HostPreconditionError('HOST_KEY_UNKNOWN', `the host key of ${label} is not known: it presented ${key.type} ${key.fingerprint}, and ${known.files.filter((f) => !f.startsWith('/etc/')).join(' and ')} list no key for ${khName}`, {
    details: { host: label, knownHostsName: khName, keyType: key.type, fingerprint: key.fingerprint, knownHosts: known.appendTo },
    hint: `Check that fingerprint with the host's administrator, then re-run with --accept-new-host-key to add it to ${known.appendTo}, or add the host's key there yourself (ssh-keyscan, checked against the host).`,
  });
}

export function knownHostsUnwritable(label: string, path: string, cause: Error): HostPreconditionError {
  return new HostPreconditionError('KNOWN_HOSTS_UNWRITABLE', `cannot add the host key of ${label} to ${path}: ${cause.message}`, { cause });
}

/** What a failed connect means, from ssh2's error (or the host-key verdict that refused it). */
export function mapConnectError(
  err: Error & { level?: string; code?: string },
  ctx: { label: string; hostName: string; port: number; timeoutMs: number; keyError?: Error; creds: Credentials },
): Error {
  const { label } = ctx;
  if (ctx.keyError) return ctx.keyError;
  const where = `${ctx.hostName}:${ctx.port}`;
  if (err.level === 'client-authentication') {
    return new HostPreconditionError('SSH_AUTH_FAILED', `${label} refused every key ferry offered: ${ctx.creds.tried.join(', ')}`, {
      details: { host: label, tried: ctx.creds.tried, skipped: ctx.creds.skipped },
      hint: `Check that the key's public half is in ~/.ssh/authorized_keys of that user on the host, or pass --identity.${ctx.creds.skipped.length ? ` Skipped: ${ctx.creds.skipped.join('; ')}.` : ''}`,
      cause: err,
    });
  }
  if (err.level === 'client-timeout' || /Timed out while waiting for handshake/.test(err.message)) {
    return new HostPreconditionError('SSH_UNREACHABLE', `cannot connect to ${label} (${where}): no SSH handshake within ${Math.round(ctx.timeoutMs / 1000)} s`, {
      details: { host: label, address: where },
      hint: 'Check the address, that sshd runs there and that the network lets you through; --ssh-timeout gives slow links longer.',
      cause: err,
    });
  }
  if (/Connection lost before handshake|closed during the handshake/i.test(err.message)) {
    return new HostPreconditionError('SSH_UNREACHABLE', `cannot connect to ${label} (${where}): the connection closed before the SSH handshake (no sshd there, or a firewall in between)`, {
      details: { host: label, address: where },
      hint: 'Check the address and that sshd runs there; names from ~/.ssh/config (HostName, Port) are used.',
      cause: err,
    });
  }
  const code = err.code ?? '';
  if (['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'ETIMEDOUT', 'ECONNRESET'].includes(code)) {
    const what = code === 'ECONNREFUSED' ? 'connection refused (is sshd running there?)' : code === 'ENOTFOUND' || code === 'EAI_AGAIN' ? 'no such host name' : err.message;
    return new HostPreconditionError('SSH_UNREACHABLE', `cannot connect to ${label} (${where}): ${what}`, {
      details: { host: label, address: where, code },
      hint: 'Check the address and that sshd runs there; names from ~/.ssh/config (HostName, Port) are used.',
      cause: err,
    });
  }
  return new HostPreconditionError('SSH_FAILED', `SSH connection to ${label} (${where}) failed: ${err.message}`, { details: { host: label, address: where }, cause: err });
}
