import { describe, expect, it } from 'vitest';
import { checkHostKey, entryMatches, knownHostName, knownHostsLine, knownKeyTypes, parseKnownHosts } from '../../src/core/known-hosts.js';

// Two ed25519 public keys, and their entries hashed by `ssh-keygen -H` (edge-1; [edge-2]:2222).
const A = 'AAAAC3NzaC1lZDI1NTE5AAAAIIR/Nm1nuAiy8oyG3s4BF/m8bd9yuf6LGzi2mb2Lpf8E';
const B = 'AAAAC3NzaC1lZDI1NTE5AAAAIAjVdF2A3UPcAGqClp3j5i4exBOX5xRyoqQW9wBHOK0Q';
const keyA = Buffer.from(A, 'base64');
const keyB = Buffer.from(B, 'base64');
const hashed = `|1|yg07s/DOXzhxJM+iS/RN6TPLQ4k=|RzO6RTLAMvHKFE7/Btne+v7vtdk= ssh-ed25519 ${A}
|1|RD92oeY61cVOc85atkYT0rN/psM=|d39+95nq94Z0Uq4p67jwpQN2rW4= ssh-ed25519 ${B}
`;
const parse = (text: string) => parseKnownHosts({ path: 'kh', text });

describe('known_hosts', () => {
  it('names non-22 ports as [host]:port', () => {
    expect(knownHostName('edge-1', 22)).toBe('edge-1');
    expect(knownHostName('10.0.0.5', 2222)).toBe('[10.0.0.5]:2222');
  });

  it('matches hashed entries made by ssh-keygen -H', () => {
    const entries = parse(hashed);
    expect(entries).toHaveLength(2);
    expect(checkHostKey(entries, 'edge-1', keyA).kind).toBe('trusted');
    expect(checkHostKey(entries, '[edge-2]:2222', keyB).kind).toBe('trusted');
    // The same host on port 22 is another name: unknown, not trusted.
    expect(checkHostKey(entries, 'edge-2', keyB).kind).toBe('unknown');
  });

  it('reports a changed key when the host is listed with another key', () => {
    const v = checkHostKey(parse(hashed), 'edge-1', keyB);
    expect(v.kind).toBe('changed');
    if (v.kind === 'changed') expect(v.known[0]!.where).toBe('kh line 1');
  });

  it('plain entries: comma lists, wildcards and negation', () => {
    const entries = parse(`edge-1,10.0.0.11 ssh-ed25519 ${A}\n*.lab,!secret.lab ssh-ed25519 ${B}\n`);
    expect(checkHostKey(entries, '10.0.0.11', keyA).kind).toBe('trusted');
    expect(checkHostKey(entries, 'x.lab', keyB).kind).toBe('trusted');
    expect(checkHostKey(entries, 'secret.lab', keyB).kind).toBe('unknown');
    expect(entryMatches('[h]:2222', '[h]:2222')).toBe(true);
  });

  it('a revoked key is refused even where another line trusts it; CA lines trust nothing', () => {
    const entries = parse(`edge-1 ssh-ed25519 ${A}\n@revoked * ssh-ed25519 ${A}\n@cert-authority * ssh-ed25519 ${B}\n`);
    expect(checkHostKey(entries, 'edge-1', keyA).kind).toBe('revoked');
    expect(checkHostKey(entries, 'other', keyB).kind).toBe('unknown');
  });

  it('skips lines it cannot read, which then never trust anything', () => {
    const entries = parse(`garbage\nedge-1 ssh-rsa ${A}\nedge-1 ssh-ed25519 not*base64\n# comment\n`);
    expect(entries).toHaveLength(0);
  });

  it('lists the key types known for a host, so the key exchange asks for those', () => {
    expect(knownKeyTypes(parse(hashed), 'edge-1')).toEqual(['ssh-ed25519']);
    expect(knownKeyTypes(parse(hashed), 'nobody')).toEqual([]);
  });

  it('writes lines that it (and ssh) read back', () => {
    const line = knownHostsLine('[198.18.1.2]:2222', keyA);
    expect(line).toBe(`[198.18.1.2]:2222 ssh-ed25519 ${A}`);
    expect(checkHostKey(parse(line), '[198.18.1.2]:2222', keyA).kind).toBe('trusted');
  });
});
