// One OpenSSH pattern matcher for allowed_signers, ssh_config and known_hosts (match.c's rules).
import { describe, expect, it } from 'vitest';
import { matchHostPatternList, matchPattern, matchPatternList } from '../../src/core/patterns.js';

describe('OpenSSH patterns', () => {
  it('matches * and ? like OpenSSH', () => {
    expect(matchPattern('ferry-bundle', 'ferry-*')).toBe(true);
    expect(matchPattern('ferry-bundle', '*')).toBe(true);
    expect(matchPattern('ferry', 'f?rry')).toBe(true);
    expect(matchPattern('ferry', 'f?rr')).toBe(false);
    expect(matchPattern('a@example.com', '*@*.com')).toBe(true);
    expect(matchPattern('a@example.org', '*@*.com')).toBe(false);
    expect(matchPattern('Ferry', 'ferry')).toBe(false);
    expect(matchPattern('', '*')).toBe(true);
    expect(matchPattern('x', '')).toBe(false);
    expect(matchPattern('a'.repeat(50), `${'*a'.repeat(20)}b`)).toBe(false);
  });
  it('lets a negated pattern veto a list', () => {
    expect(matchPatternList('ferry-bundle', ['file', 'ferry-*'])).toBe(true);
    expect(matchPatternList('ferry-bundle', ['!ferry-bundle', '*'])).toBe(false);
    expect(matchPatternList('file', ['!ferry-bundle', '*'])).toBe(true);
    expect(matchPatternList('file', ['!ferry-bundle'])).toBe(false);
  });
  it('folds case for host names only, as match_hostname does', () => {
    expect(matchHostPatternList('Edge-1.Example.COM', ['*.example.com'])).toBe(true);
    expect(matchHostPatternList('edge-1', ['EDGE-?'])).toBe(true);
    expect(matchHostPatternList('edge-1', ['*', '!EDGE-1'])).toBe(false);
    // Namespaces and file names stay case-sensitive.
    expect(matchPatternList('Ferry-Bundle', ['ferry-*'])).toBe(false);
  });
});
