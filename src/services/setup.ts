/**
 * `ferry host setup`: a host's first visit. The executable that came on the stick is installed as
 * /usr/local/bin/ferry only when the signed bundle it came with lists exactly these bytes; the trust
 * file becomes the host's /etc/ferry/allowed_signers; the state directory is made. Running it again
 * with the same files changes nothing; a different trust file already in place is only replaced
 * with --force, because it decides what this host will install from now on.
 */
import { dirname, join, resolve } from 'node:path';
import { ensureDirectory, exists, hashFile, installFileAtomic, readText } from '../adapters/fs.js';
import { writeFileAtomic } from '../adapters/state-store.js';
import { runningExecutable } from '../adapters/tool-version.js';
import { TrustError, UsageError } from '../errors.js';
import { openBundle, type TrustOptions } from './bundle.js';
import type { Reporter } from './reporter.js';

export interface SetupOptions {
  trust: TrustOptions;
  /** The bundle that carries the executable; null: the directory the executable is in. */
  bundle: string | null;
  /** The executable to install; null: the one running. */
  executable: string | null;
  binDir: string;
  configDir: string;
  stateDir: string;
  force: boolean;
}

export type SetupAction = 'installed' | 'replaced' | 'unchanged';

export interface SetupResult {
  bundle: string;
  version: string;
  sha256: string;
  executable: { path: string; action: SetupAction };
  trust: { path: string; action: SetupAction };
  stateDir: { path: string; action: 'created' | 'unchanged' };
}

export async function setupHost(options: SetupOptions, reporter: Reporter): Promise<SetupResult> {
  const source = options.executable ?? runningExecutable();
  if (source === null) {
    throw new UsageError('SETUP_NEEDS_EXECUTABLE', 'host setup installs the ferry executable, and this ferry runs under node', {
      hint: 'Run it from the executable a bundle carries (./ferry host setup … on the stick), or name it with --executable.',
    });
  }
  const bundleDir = options.bundle ?? dirname(resolve(source));
  if (options.trust.allowUnsigned) {
    reporter.warn({ code: 'ALLOW_UNSIGNED_IGNORED', message: 'host setup ignores --allow-unsigned: it installs what runs as root from now on, so only a signed bundle vouches for it' });
  }
  const opened = await openBundle(bundleDir, { ...options.trust, allowUnsigned: false }, reporter);
  const carried = opened.manifest.ferry;
  if (!carried) {
    throw new TrustError('SETUP_EXECUTABLE_UNVERIFIED', `the bundle ${opened.dir} carries no ferry executable, so nothing vouches for ${source}`, {
      details: { bundle: opened.dir, executable: source },
      hint: 'Use a bundle made with bundle create --with-ferry, or name one with --bundle.',
    });
  }
  const { sha256 } = await hashFile(source, carried.size + 1);
  if (`sha256:${sha256}` !== carried.sha256) {
    throw new TrustError('SETUP_EXECUTABLE_UNVERIFIED', `${source} is not the ferry executable the signed bundle lists (${carried.path}, ${carried.sha256})`, {
      details: { bundle: opened.dir, executable: source, expected: carried.sha256, actual: `sha256:${sha256}` },
      hint: 'Copy the stick again from the build server; do not install an executable the bundle does not list.',
    });
  }
  reporter.log(`${source}: ferry ${carried.version}, listed in the signed bundle ${opened.manifest.name} ${opened.manifest.version}`);

  const trustTarget = join(options.configDir, 'allowed_signers');
  const trustAction = resolve(options.trust.trust) === resolve(trustTarget) ? 'unchanged' : await installTrust(resolve(options.trust.trust), trustTarget, options.force);
  reporter.log(`${trustTarget}: ${trustAction}`);

  const exeTarget = join(options.binDir, 'ferry');
  let exeAction: SetupAction = 'unchanged';
  const had = (await exists(exeTarget)) ? await hashFile(exeTarget, carried.size + 1).catch(() => null) : null;
  if (had === null || `sha256:${had.sha256}` !== carried.sha256) {
    await ensureDirectory(options.binDir, 0o755);
    const written = await installFileAtomic(source, exeTarget, 0o755);
    // The copy's digest comes from the bytes written: a file changed under us is caught here.
    if (`sha256:${written.sha256}` !== carried.sha256) {
      throw new TrustError('SETUP_EXECUTABLE_UNVERIFIED', `${source} changed while it was copied to ${exeTarget}`, {
        details: { executable: source, expected: carried.sha256, actual: `sha256:${written.sha256}` },
        hint: `Run host setup again; ${exeTarget} now holds what was read and must not be used.`,
      });
    }
    exeAction = had === null ? 'installed' : 'replaced';
  }
  reporter.log(`${exeTarget}: ${exeAction}`);

  const created = await ensureDirectory(options.stateDir, 0o750);
  return {
    bundle: opened.dir,
    version: carried.version,
    sha256: carried.sha256,
    executable: { path: exeTarget, action: exeAction },
    trust: { path: trustTarget, action: trustAction },
    stateDir: { path: options.stateDir, action: created ? 'created' : 'unchanged' },
  };
}

async function installTrust(source: string, target: string, force: boolean): Promise<SetupAction> {
  const wanted = await readText(source);
  const present = (await exists(target)) ? await readText(target) : null;
  if (present === wanted) return 'unchanged';
  if (present !== null && !force) {
    throw new UsageError('SETUP_TRUST_DIFFERS', `${target} already exists with other signers than ${source}`, {
      details: { target, source },
      hint: `It decides what this host installs: compare the two, then merge by hand, or replace it with --force.`,
    });
  }
  await ensureDirectory(dirname(target), 0o755);
  // World-readable, root's to change (the TRUST_FILE_WRITABLE warning checks the same).
  await writeFileAtomic(target, Buffer.from(wanted, 'utf8'), 0o644);
  return present === null ? 'installed' : 'replaced';
}
