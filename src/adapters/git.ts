/** Version numbers from git, for bundles whose definition names none. */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

async function git(cwd: string, args: string[]): Promise<string | undefined> {
  try {
    const { stdout } = await run('git', args, { cwd, timeout: 10_000 });
    return stdout.trim() || undefined;
  } catch {
    return undefined;
  }
}

/**
 * `<last tag>-<commits since>-g<sha>` when the tree is tagged, `0.0.0-<commits>-g<sha>` when it is
 * a git checkout without tags, undefined outside git (the caller then uses a timestamp).
 */
export async function versionFromGit(dir: string): Promise<string | undefined> {
  const described = await git(dir, ['describe', '--tags', '--long', '--match', '*[0-9]*']);
  if (described) return described.replace(/^v(?=\d)/, '');
  const sha = await git(dir, ['rev-parse', '--short=10', 'HEAD']);
  if (!sha) return undefined;
  const count = (await git(dir, ['rev-list', '--count', 'HEAD'])) ?? '0';
  return `0.0.0-${count}-g${sha}`;
}
