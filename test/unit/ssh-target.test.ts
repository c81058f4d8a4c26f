import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { hostNames, parseSshTarget, shellCommand, shellQuote, TargetError } from '../../src/core/ssh-target.js';

describe('--ssh targets', () => {
  it('reads [user@]host[:port], ssh:// URLs and bracketed IPv6', () => {
    expect(parseSshTarget('deploy@edge-1')).toEqual({ spec: 'deploy@edge-1', user: 'deploy', host: 'edge-1' });
    expect(parseSshTarget('edge-1:2222')).toEqual({ spec: 'edge-1:2222', host: 'edge-1', port: 2222 });
    expect(parseSshTarget('ssh://root@10.0.0.5:22')).toMatchObject({ user: 'root', host: '10.0.0.5', port: 22 });
    expect(parseSshTarget('root@[fd00::5]:2200')).toMatchObject({ user: 'root', host: 'fd00::5', port: 2200 });
    expect(parseSshTarget('fd00::5')).toMatchObject({ host: 'fd00::5' });
  });

  it('refuses what cannot be a host, a user or a port', () => {
    for (const bad of ['', '@edge', 'edge:port', 'edge:70000', '-oProxyCommand=x', 'a;b', 'user name@h', 'h/x']) {
      expect(() => parseSshTarget(bad), bad).toThrow(TargetError);
    }
  });
});

describe('--host for a fleet', () => {
  const targets = ['deploy@edge-1', 'deploy@edge-2'];

  it('maps TARGET=NAME per host', () => {
    expect([...hostNames(targets, ['deploy@edge-2=e2'])]).toEqual([['deploy@edge-2', 'e2']]);
  });

  it('takes a bare name only with a single target', () => {
    expect(hostNames(['deploy@edge-1'], ['edge-1']).get('deploy@edge-1')).toBe('edge-1');
    expect(() => hostNames(targets, ['edge-1'])).toThrow(/TARGET=NAME/);
  });

  it('refuses targets not given with --ssh, twice-named ones and empty names', () => {
    expect(() => hostNames(targets, ['deploy@edge-3=e3'])).toThrow(/not one of/);
    expect(() => hostNames(targets, ['deploy@edge-1=a', 'deploy@edge-1=b'])).toThrow(/twice/);
    expect(() => hostNames(targets, ['deploy@edge-1='])).toThrow(/empty/);
  });
});

describe('shell quoting for remote commands', () => {
  it('leaves plain words alone and quotes everything else so sh reads it back verbatim', () => {
    expect(shellQuote('/var/lib/ferry/stacks/shop')).toBe('/var/lib/ferry/stacks/shop');
    const words = ["it's", 'a b', '$(rm -rf /)', '`x`', 'semi;colon', '', 'new\nline', '*'];
    const echoed = execFileSync('sh', ['-c', `printf '%s\\0' ${shellCommand(words)}`]).toString('utf8');
    expect(echoed.split('\0').slice(0, -1)).toEqual(words);
  });
});
