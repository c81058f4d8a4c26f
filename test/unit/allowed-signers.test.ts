import { generateKeyPairSync, createHash, sign as cryptoSign } from 'node:crypto';
import { describe, it, expect } from 'vitest';
import { formatAllowedSignersLine, parseAllowedSigners, parseTimestamp } from '../../src/core/allowed-signers.js';
import { armor, dearmor, encodeFields, encodeUint32 } from '../../src/core/ssh-wire.js';
import { generateKeyPair, parseSigningKey } from '../../src/core/openssh-key.js';
import { BUNDLE_NAMESPACE, parseSignature, verifySignature, type SigningKey } from '../../src/core/sshsig.js';
import { FerryError, TrustError } from '../../src/errors.js';

const ED_KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB6xr5wIG78rIO2P5IxekWv1oBjOPCWhoZ/fcuBdqrFA';
const ED_FP = 'SHA256:BgShkASOk2zIC0O3ZsRBt6+tjgpNrqh77hX7T7dTdYg';
// Parsing only checks that the blob names its type, so a synthetic RSA blob is enough.
const RSA_KEY = `ssh-rsa ${encodeFields('ssh-rsa', Buffer.from([1, 0, 1]), Buffer.alloc(129, 0x5a)).toString('base64')}`;

/** XORs one byte in place (the mask is below 256, so the result stays a byte). */
function flipByte(buf: Buffer, index: number, mask: number): void {
  buf.writeUInt8(buf.readUInt8(index) ^ mask, index);
}

function trustErrorOf(fn: () => unknown): TrustError {
  try {
    fn();
  } catch (error) {
    if (error instanceof TrustError) return error;
    throw new Error(`expected a TrustError, got ${String(error)}`, { cause: error });
  }
  throw new Error('expected a TrustError, but nothing was thrown');
}

describe('parseAllowedSigners', () => {
  it('parses principals, key and comment, skipping comments and blank lines', () => {
    const text = [
      '# trust file for ferry',
      '',
      '   ',
      `ferry,ci@example.com ${ED_KEY} built on ci-01`,
      '  # indented comment',
      `"*@example.com" ${RSA_KEY}`,
    ].join('\n');
    const signers = parseAllowedSigners(text);
    expect(signers).toHaveLength(2);
    const [ed, rsa] = signers;
    expect(ed).toMatchObject({
      line: 4,
      principals: ['ferry', 'ci@example.com'],
      certAuthority: false,
      keyType: 'ssh-ed25519',
      fingerprint: ED_FP,
      comment: 'built on ci-01',
    });
    expect(ed!.namespaces).toBeUndefined();
    expect(ed!.validAfter).toBeUndefined();
    expect(rsa).toMatchObject({ line: 6, principals: ['*@example.com'], keyType: 'ssh-rsa' });
    expect(rsa!.comment).toBeUndefined();
  });

  it('handles CRLF line ends, tabs and a byte order mark', () => {
    const signers = parseAllowedSigners(`\uFEFFferry\t${ED_KEY.replace(' ', '\t')}\r\nother ${ED_KEY}\r\n`);
    expect(signers.map((s) => s.principals[0])).toEqual(['ferry', 'other']);
    expect(signers[0]!.comment).toBeUndefined();
  });

  it('parses options: quoted namespaces, cert-authority, validity, case-insensitive keywords', () => {
    const signers = parseAllowedSigners(
      [
        `ferry namespaces="ferry-bundle,file" ${ED_KEY}`,
        `ca@example.com cert-authority,NAMESPACES="ferry-bundle" ${ED_KEY} the CA`,
        `ferry valid-after="20240101",valid-before="20250615123000Z" ${ED_KEY}`,
        `ferry Valid-Before="202506151230Z" ${ED_KEY}`,
        `"ferry team" namespaces="a b" ${ED_KEY}`,
      ].join('\n'),
    );
    expect(signers[0]!.namespaces).toEqual(['ferry-bundle', 'file']);
    expect(signers[0]!.certAuthority).toBe(false);
    expect(signers[1]).toMatchObject({ certAuthority: true, namespaces: ['ferry-bundle'], comment: 'the CA' });
    expect(signers[2]!.validAfter!.getTime()).toBe(new Date(2024, 0, 1).getTime()); // local time without Z
    expect(signers[2]!.validBefore!.toISOString()).toBe('2025-06-15T12:30:00.000Z');
    expect(signers[3]!.validBefore!.toISOString()).toBe('2025-06-15T12:30:00.000Z');
    expect(signers[4]).toMatchObject({ principals: ['ferry team'], namespaces: ['a b'] });
  });

  it('tells a broken key from options', () => {
    expect(() => parseAllowedSigners(`ferry ssh-ed25519 AAAA!!!`)).toThrow(/line 1: the ssh-ed25519 key is not valid base64/);
    expect(() => parseAllowedSigners(`ferry no-touch-required ${ED_KEY}`)).toThrow(/line 1: unknown option "no-touch-required"/);
  });

  const bad: Array<[string, RegExp]> = [
    ['ferry', /missing key type and key after the principals/],
    [`ferry ssh-ed25519`, /missing base64 key after "ssh-ed25519"/],
    [`ferry namespaces="x"`, /missing key type and key after the options/],
    [`ferry ssh-rsa ${ED_KEY.split(' ')[1]}`, /labelled ssh-rsa but its data is a ssh-ed25519 key/],
    [`ferry ssh-ed25519 ${encodeFields('ssh-ed25519', Buffer.alloc(31)).toString('base64')}`, /malformed: ed25519 public key is 31 bytes/],
    [`ferry namespaces=ferry-bundle ${ED_KEY}`, /must be in double quotes/],
    [`ferry namespaces="ferry-bundle ${ED_KEY}`, /unterminated quote/],
    [`ferry namespaces="" ${ED_KEY}`, /namespaces is empty/],
    [`ferry namespaces="a,,b" ${ED_KEY}`, /empty name in namespaces/],
    [`ferry namespaces="a",namespaces="b" ${ED_KEY}`, /given twice/],
    [`ferry valid-before="20250230" ${ED_KEY}`, /valid-before "20250230" is not a timestamp/],
    [`ferry valid-after="2025-01-01" ${ED_KEY}`, /valid-after "2025-01-01" is not a timestamp/],
    [`ferry cert-authority="yes" ${ED_KEY}`, /cert-authority takes no value/],
    [`ferry cert-authority, ${ED_KEY}`, /trailing comma/],
    [`ferry valid-after ${ED_KEY}`, /unknown option|needs a value/],
    [`ferry,,other ${ED_KEY}`, /empty principal/],
    [`"ferry ${ED_KEY}`, /unterminated quote in the principals/],
  ];
  for (const [line, message] of bad) {
    it(`rejects: ${line.slice(0, 60)}`, () => {
      const err = trustErrorOf(() => parseAllowedSigners(`# header\n\n${line}\n`, '/etc/ferry/allowed_signers'));
      expect(err.code).toBe('TRUST_STORE_INVALID');
      expect(err.exitCode).toBe(3);
      expect(err.message).toMatch(/^allowed_signers line 3: /);
      expect(err.message).toMatch(message);
      expect(err.hint).toContain('/etc/ferry/allowed_signers');
      expect(err.details).toEqual({ file: '/etc/ferry/allowed_signers', line: 3 });
    });
  }

  it('accepts an empty file', () => {
    expect(parseAllowedSigners('')).toEqual([]);
    expect(parseAllowedSigners('# nothing yet\n')).toEqual([]);
  });
});

describe('parseTimestamp', () => {
  it('reads the forms ssh-keygen accepts', () => {
    expect(parseTimestamp('20250101Z')!.toISOString()).toBe('2025-01-01T00:00:00.000Z');
    expect(parseTimestamp('202501011230Z')!.toISOString()).toBe('2025-01-01T12:30:00.000Z');
    expect(parseTimestamp('20250101123045z')!.toISOString()).toBe('2025-01-01T12:30:45.000Z');
    expect(parseTimestamp('20250101')!.getTime()).toBe(new Date(2025, 0, 1).getTime());
  });
  it('refuses other forms and impossible dates', () => {
    for (const t of ['2025010', '2025010112', '202501011230451', '20251301', '20250132', '20250101246000', '20250101T1200', '']) {
      expect(parseTimestamp(t), t).toBeUndefined();
    }
  });
});

describe('formatAllowedSignersLine', () => {
  it('writes a line that parses back to the same key and options', () => {
    const line = formatAllowedSignersLine('ferry', `${ED_KEY} ci@build`, { namespaces: [BUNDLE_NAMESPACE] });
    expect(line).toBe(`ferry namespaces="ferry-bundle" ${ED_KEY} ci@build`);
    const [signer] = parseAllowedSigners(line);
    expect(signer).toMatchObject({ principals: ['ferry'], namespaces: ['ferry-bundle'], fingerprint: ED_FP, comment: 'ci@build' });
  });
  it('refuses principals that would break the line', () => {
    expect(() => formatAllowedSignersLine('two words', ED_KEY)).toThrow(RangeError);
    expect(() => formatAllowedSignersLine('', ED_KEY)).toThrow(RangeError);
  });
});

// ---------------------------------------------------------------------------------------------

function newKey(comment = 'test'): SigningKey {
  return parseSigningKey(generateKeyPair(comment).privateKey, 'test key');
}

function trustLine(key: SigningKey, options = 'namespaces="ferry-bundle"', principal = 'ferry'): string {
  return `${principal} ${options} ${key.publicKeyLine}`;
}

/** Deterministic bytes so that a failing garbage case can be reproduced. */
function prng(seed: number): (n: number) => Buffer {
  let s = seed >>> 0 || 1;
  return (n) => {
    const out = Buffer.alloc(n);
    for (let i = 0; i < n; i++) {
      s ^= s << 13;
      s >>>= 0;
      s ^= s >>> 17;
      s ^= s << 5;
      s >>>= 0;
      out[i] = s & 0xff;
    }
    return out;
  };
}

describe('verifySignature', () => {
  const key = newKey('ci@build');
  const message = Buffer.from('{"bundle":"manifest"}\n');
  const signature = key.sign(message, BUNDLE_NAMESPACE);
  const trusted = parseAllowedSigners(trustLine(key));

  it('accepts a good signature and reports who made it', () => {
    const result = verifySignature(message, signature, BUNDLE_NAMESPACE, trusted);
    expect(result).toEqual({
      publicKeyLine: key.publicKeyLine.split(' ').slice(0, 2).join(' '),
      fingerprint: key.fingerprint,
      namespace: 'ferry-bundle',
      hashAlgorithm: 'sha512',
      principals: ['ferry'],
    });
    expect(verifySignature(message, Buffer.from(signature), BUNDLE_NAMESPACE, trusted).principals).toEqual(['ferry']);
  });

  it('returns the principals of every line that accepts the key', () => {
    const signers = parseAllowedSigners(
      [
        trustLine(key),
        trustLine(key, 'namespaces="file"', 'files-only'),
        trustLine(key, 'valid-before="20000101Z"', 'expired'),
        `a@x,b@x ${key.publicKeyLine}`,
        `ferry ${key.publicKeyLine}`,
      ].join('\n'),
    );
    expect(verifySignature(message, signature, BUNDLE_NAMESPACE, signers).principals).toEqual(['ferry', 'a@x', 'b@x']);
  });

  it('rejects a signature made for another namespace', () => {
    const other = key.sign(message, 'file');
    const err = trustErrorOf(() => verifySignature(message, other, BUNDLE_NAMESPACE, trusted));
    expect(err.code).toBe('TRUST_WRONG_NAMESPACE');
    expect(err.message).toContain('"file"');
  });

  it('checks the namespace before trust, and trust before cryptography', () => {
    const stranger = newKey();
    const strangerSig = stranger.sign(message, 'file');
    expect(trustErrorOf(() => verifySignature(message, strangerSig, BUNDLE_NAMESPACE, trusted)).code).toBe('TRUST_WRONG_NAMESPACE');
    const tampered = Buffer.from(message);
    flipByte(tampered, 0, 1);
    const strangerBundleSig = stranger.sign(message, BUNDLE_NAMESPACE);
    expect(trustErrorOf(() => verifySignature(tampered, strangerBundleSig, BUNDLE_NAMESPACE, trusted)).code).toBe('TRUST_UNTRUSTED_KEY');
  });

  it('rejects a tampered message', () => {
    for (let i = 0; i < message.length; i += 3) {
      const tampered = Buffer.from(message);
      flipByte(tampered, i, 0x20);
      const err = trustErrorOf(() => verifySignature(tampered, signature, BUNDLE_NAMESPACE, trusted));
      expect(err.code).toBe('TRUST_SIGNATURE_INVALID');
    }
    expect(trustErrorOf(() => verifySignature(Buffer.concat([message, Buffer.from(' ')]), signature, BUNDLE_NAMESPACE, trusted)).code).toBe(
      'TRUST_SIGNATURE_INVALID',
    );
  });

  it('rejects a key that is not in the trust file, naming its fingerprint', () => {
    const other = newKey();
    const err = trustErrorOf(() => verifySignature(message, other.sign(message, BUNDLE_NAMESPACE), BUNDLE_NAMESPACE, trusted));
    expect(err.code).toBe('TRUST_UNTRUSTED_KEY');
    expect(err.message).toContain(other.fingerprint);
    expect(err.message).toMatch(/not in the trust file/);
    expect(err.hint).toMatch(/add this line to the trust file/);
    expect(err.hint).toContain(other.publicKeyLine.split(' ')[1]);
    expect(trustErrorOf(() => verifySignature(message, signature, BUNDLE_NAMESPACE, [])).code).toBe('TRUST_UNTRUSTED_KEY');
  });

  it('honours namespaces= on the trust line, with patterns', () => {
    const only = (opts: string) => parseAllowedSigners(trustLine(key, opts));
    expect(trustErrorOf(() => verifySignature(message, signature, BUNDLE_NAMESPACE, only('namespaces="file,git"'))).message).toMatch(
      /not for namespace "ferry-bundle"/,
    );
    expect(trustErrorOf(() => verifySignature(message, signature, BUNDLE_NAMESPACE, only('namespaces="!ferry-bundle,*"'))).code).toBe(
      'TRUST_UNTRUSTED_KEY',
    );
    expect(verifySignature(message, signature, BUNDLE_NAMESPACE, only('namespaces="ferry-*"')).principals).toEqual(['ferry']);
    expect(verifySignature(message, signature, BUNDLE_NAMESPACE, parseAllowedSigners(`ferry ${key.publicKeyLine}`)).principals).toEqual([
      'ferry',
    ]);
  });

  it('honours valid-after and valid-before, inclusively', () => {
    const signers = parseAllowedSigners(trustLine(key, 'namespaces="ferry-bundle",valid-after="20250101Z",valid-before="20251231235959Z"'));
    const at = (iso: string) => verifySignature(message, signature, BUNDLE_NAMESPACE, signers, new Date(iso));
    expect(at('2025-06-01T00:00:00Z').principals).toEqual(['ferry']);
    expect(at('2025-01-01T00:00:00Z').principals).toEqual(['ferry']);
    expect(at('2025-12-31T23:59:59.900Z').principals).toEqual(['ferry']);
    const expired = trustErrorOf(() => at('2026-01-01T00:00:00Z'));
    expect(expired.code).toBe('TRUST_UNTRUSTED_KEY');
    expect(expired.message).toMatch(/not valid at 2026-01-01T00:00:00.000Z/);
    expect(trustErrorOf(() => at('2024-12-31T23:59:59Z')).code).toBe('TRUST_UNTRUSTED_KEY');
  });

  it('never matches a cert-authority line with a plain key', () => {
    const err = trustErrorOf(() =>
      verifySignature(message, signature, BUNDLE_NAMESPACE, parseAllowedSigners(`*@x cert-authority ${key.publicKeyLine}`)),
    );
    expect(err.code).toBe('TRUST_UNTRUSTED_KEY');
    expect(err.message).toMatch(/cert-authority/);
  });

  it('accepts sha256 signatures as well as sha512', () => {
    // Built by hand with node:crypto, independently of our signer.
    const { privateKey, publicKey } = generateKeyPairSync('ed25519');
    const raw = Buffer.from(publicKey.export({ format: 'jwk' }).x!, 'base64url');
    const pubBlob = encodeFields('ssh-ed25519', raw);
    const digest = createHash('sha256').update(message).digest();
    const signed = Buffer.concat([Buffer.from('SSHSIG'), encodeFields(BUNDLE_NAMESPACE, '', 'sha256', digest)]);
    const sig = cryptoSign(null, signed, privateKey);
    const blob = Buffer.concat([
      Buffer.from('SSHSIG'),
      encodeUint32(1),
      encodeFields(pubBlob, BUNDLE_NAMESPACE, '', 'sha256', encodeFields('ssh-ed25519', sig)),
    ]);
    const signers = parseAllowedSigners(`ferry ssh-ed25519 ${pubBlob.toString('base64')}`);
    const result = verifySignature(message, armor('SSH SIGNATURE', blob), BUNDLE_NAMESPACE, signers);
    expect(result.hashAlgorithm).toBe('sha256');
    expect(trustErrorOf(() => verifySignature(Buffer.from('x'), armor('SSH SIGNATURE', blob), BUNDLE_NAMESPACE, signers)).code).toBe(
      'TRUST_SIGNATURE_INVALID',
    );
  });

  it('rejects a signature whose ed25519 bytes were altered', () => {
    const blob = dearmor('SSH SIGNATURE', signature);
    const altered = Buffer.from(blob);
    flipByte(altered, altered.length - 10, 1);
    const err = trustErrorOf(() => verifySignature(message, armor('SSH SIGNATURE', altered), BUNDLE_NAMESPACE, trusted));
    expect(err.code).toBe('TRUST_SIGNATURE_INVALID');
  });

  describe('malformed signatures', () => {
    const blob = dearmor('SSH SIGNATURE', signature);
    const expectMalformed = (input: string | Buffer, label: string) => {
      let err: TrustError;
      try {
        err = trustErrorOf(() => verifySignature(message, input, BUNDLE_NAMESPACE, trusted));
      } catch (error) {
        throw new Error(`${label}: ${String(error)}`);
      }
      expect(err.code, label).toBe('TRUST_SIGNATURE_MALFORMED');
      expect(trustErrorOf(() => parseSignature(input)).code, label).toBe('TRUST_SIGNATURE_MALFORMED');
    };

    it('rejects structural damage with TRUST_SIGNATURE_MALFORMED', () => {
      const withHeader = (magic: string, version: number) =>
        armor('SSH SIGNATURE', Buffer.concat([Buffer.from(magic), encodeUint32(version), blob.subarray(10)]));
      expectMalformed(withHeader('SSHSIX', 1), 'wrong magic');
      expectMalformed(withHeader('SSHSIG', 2), 'version 2');
      expectMalformed(withHeader('SSHSIG', 0), 'version 0');
      expectMalformed(armor('SSH SIGNATURE', Buffer.concat([blob, Buffer.from([0])])), 'trailing byte');
      expectMalformed(signature.replace('SSH SIGNATURE', 'PGP SIGNATURE'), 'other armor');
      expectMalformed(blob, 'not armored');
      expectMalformed('', 'empty');
      expectMalformed('x'.repeat(200_000), 'huge');
      const pub = Buffer.from(key.publicKeyLine.split(' ')[1]!, 'base64');
      const build = (hash: string, sigType: string, sigLen: number) =>
        armor(
          'SSH SIGNATURE',
          Buffer.concat([Buffer.from('SSHSIG'), encodeUint32(1), encodeFields(pub, BUNDLE_NAMESPACE, '', hash, encodeFields(sigType, Buffer.alloc(sigLen)))]),
        );
      expectMalformed(build('md5', 'ssh-ed25519', 64), 'hash md5');
      expectMalformed(build('sha512', 'ssh-rsa', 64), 'sig type mismatch');
      expectMalformed(build('sha512', 'ssh-ed25519', 63), 'short sig');
    });

    it('rejects every truncation', () => {
      for (let n = 0; n < blob.length; n++) expectMalformed(armor('SSH SIGNATURE', blob.subarray(0, n)), `truncated to ${n}`);
      const text = signature;
      for (let n = 0; n < text.length - 1; n += 7) {
        expect(() => verifySignature(message, text.slice(0, n), BUNDLE_NAMESPACE, trusted), `text cut at ${n}`).toThrow(TrustError);
      }
    });

    it('throws only TrustError for random garbage', () => {
      const rand = prng(0xfe77);
      for (let i = 0; i < 300; i++) {
        const size = (rand(2).readUInt16BE(0) % 600) + 1;
        const bytes = rand(size);
        const inputs: Array<[string | Buffer, string]> = [
          [bytes, `raw bytes #${i}`],
          [bytes.toString('latin1'), `latin1 text #${i}`],
          [armor('SSH SIGNATURE', bytes), `armored bytes #${i}`],
          [armor('SSH SIGNATURE', Buffer.concat([Buffer.from('SSHSIG'), encodeUint32(1), bytes])), `SSHSIG header + bytes #${i}`],
        ];
        for (const [input, label] of inputs) expectMalformed(input, label);
      }
    });

    it('never accepts, and never crashes on, any single-byte change to a good signature', () => {
      const rand = prng(42);
      for (let pos = 0; pos < blob.length; pos++) {
        for (const delta of [1, 0x80, (rand(1)[0]! | 1) & 0xff]) {
          const mutated = Buffer.from(blob);
          flipByte(mutated, pos, delta);
          let thrown: unknown;
          try {
            verifySignature(message, armor('SSH SIGNATURE', mutated), BUNDLE_NAMESPACE, trusted);
          } catch (error) {
            thrown = error;
          }
          expect(thrown, `byte ${pos} ^ ${delta}`).toBeInstanceOf(TrustError);
          expect((thrown as FerryError).exitCode).toBe(3);
        }
      }
    });
  });
});

describe('parseSignature', () => {
  it('reports the signer, namespace and hash without judging trust', () => {
    const key = newKey('someone');
    const info = parseSignature(key.sign(Buffer.from('data'), 'file'));
    expect(info).toEqual({
      publicKeyLine: key.publicKeyLine.replace(/ someone$/, ''),
      fingerprint: key.fingerprint,
      namespace: 'file',
      hashAlgorithm: 'sha512',
    });
  });
});
