/**
 * OpenSSH's patterns, one implementation for every file ferry reads in OpenSSH's formats
 * (allowed_signers namespaces, ssh_config Host lines and Include globs, known_hosts host fields):
 * ssh_config(5) PATTERNS, OpenSSH's match.c. `*` is any run of characters, `?` exactly one, nothing
 * else is special. Matching is case-sensitive; host names are compared lower-cased on both sides, as
 * OpenSSH's match_hostname does (it lower-cases the host and passes dolower to the pattern list).
 */

/** One pattern against one name. Iterative with a single backtrack point: no regex built from input. */
export function matchPattern(name: string, pattern: string): boolean {
  let n = 0;
  let p = 0;
  let starP = -1;
  let starN = 0;
  while (n < name.length) {
    if (p < pattern.length && (pattern[p] === '?' || pattern[p] === name[n])) {
      n++;
      p++;
    } else if (p < pattern.length && pattern[p] === '*') {
      starP = p++;
      starN = n;
    } else if (starP >= 0) {
      p = starP + 1;
      n = ++starN;
    } else {
      return false;
    }
  }
  while (p < pattern.length && pattern[p] === '*') p++;
  return p === pattern.length;
}

/** A pattern list matches when some pattern does and no `!`-negated one does. */
export function matchPatternList(name: string, patterns: readonly string[]): boolean {
  let matched = false;
  for (const pattern of patterns) {
    if (pattern.startsWith('!')) {
      if (matchPattern(name, pattern.slice(1))) return false;
    } else if (matchPattern(name, pattern)) {
      matched = true;
    }
  }
  return matched;
}

/** A host name against a host pattern list (ssh_config Host, known_hosts): case folded. */
export function matchHostPatternList(host: string, patterns: readonly string[]): boolean {
  return matchPatternList(host.toLowerCase(), patterns.map((p) => p.toLowerCase()));
}
