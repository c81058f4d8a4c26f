import { describe, expect, it } from 'vitest';
import { matchHostPatternList } from '../../src/core/patterns.js';
import { resolveSshConfig, splitConfigLine, SshConfigError, type SshConfigFile } from '../../src/core/ssh-config.js';

const env = (includes: Record<string, string> = {}) => ({
  home: '/home/op',
  localUser: 'op',
  include: (p: string): SshConfigFile[] => (includes[p] !== undefined ? [{ path: p, text: includes[p]! }] : []),
});
const resolve = (alias: string, text: string, user?: string, includes?: Record<string, string>) => resolveSshConfig(alias, [{ path: '/home/op/.ssh/config', text }], env(includes), user);

describe('ssh_config resolution', () => {
  const config = `
# comments and blank lines are ignored
Host edge-1 edge-1.example
  HostName 10.0.0.11
  Port 2222
  IdentityFile ~/.ssh/edge_ed25519

Host edge-*  !edge-9
  User deploy
  IdentityFile ~/.ssh/%r_%h
  Port 2200

Host edge-?
  ServerAliveInterval 5

Host *
  User fallback
  IdentityFile "~/.ssh/with space"
  ConnectTimeout=7
`;

  it('takes the first value per option, in file order, as OpenSSH does', () => {
    const c = resolve('edge-1', config);
    expect(c.hostName).toBe('10.0.0.11');
    expect(c.port).toBe(2222);
    expect(c.user).toBe('deploy');
    expect(c.serverAliveIntervalS).toBe(5);
    expect(c.connectTimeoutS).toBe(7);
  });

  it('accumulates IdentityFile, expanding ~ and tokens with the final host name and user', () => {
    const c = resolve('edge-1', config);
    expect(c.identityFiles).toEqual(['/home/op/.ssh/edge_ed25519', '/home/op/.ssh/deploy_10.0.0.11', '/home/op/.ssh/with space']);
    // The user on the command line wins, and %r follows it.
    expect(resolve('edge-2', config, 'root').identityFiles[0]).toBe('/home/op/.ssh/root_edge-2');
  });

  it('honours negated patterns and ? wildcards', () => {
    const nine = resolve('edge-9', config);
    expect(nine.user).toBe('fallback');
    expect(nine.port).toBeUndefined();
    expect(resolve('edge-12', config).serverAliveIntervalS).toBeUndefined();
    expect(matchHostPatternList('EDGE-3', ['edge-*'])).toBe(true);
  });

  it('a host no block names keeps its own name', () => {
    const c = resolve('other', 'Host edge-1\n  HostName 1.2.3.4\n');
    expect(c.hostName).toBe('other');
    expect(c.identityFiles).toEqual([]);
  });

  it('%h in HostName is the alias', () => {
    expect(resolve('db', 'Host db\n  HostName %h.internal.example\n').hostName).toBe('db.internal.example');
  });

  it('options before any Host apply to all; Match blocks other than "all" never apply', () => {
    const c = resolve('x', 'User early\nMatch host x exec "false"\n  User never\nMatch all\n  Port 2022\n');
    expect(c.user).toBe('early');
    expect(c.port).toBe(2022);
  });

  it('follows Include in place', () => {
    const c = resolve('edge-1', 'Include conf.d/*.conf\nHost *\n  User late\n', undefined, { 'conf.d/*.conf': 'Host edge-1\n  User included\n' });
    expect(c.user).toBe('included');
  });

  it('reports a bad line with file and line number', () => {
    expect(() => resolve('a', 'Host a\n  Port twenty\n')).toThrow(SshConfigError);
    expect(() => resolve('a', 'Host a\n  Port twenty\n')).toThrow(/line 2/);
    expect(() => splitConfigLine('IdentityFile "unterminated')).toThrow(/quote/);
  });
});
