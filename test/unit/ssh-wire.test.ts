import { describe, it, expect } from 'vitest';
import {
  ARMOR_WRAP,
  WireFormatError,
  WireReader,
  armor,
  dearmor,
  decodeBase64Strict,
  decodeEd25519PublicKey,
  encodeEd25519PublicKey,
  encodeFields,
  encodeString,
  encodeUint32,
  formatPublicKeyLine,
  publicKeyType,
  sha256Fingerprint,
} from '../../src/core/ssh-wire.js';

describe('WireReader', () => {
  it('reads what the encoders write', () => {
    const buf = encodeFields(7, 'ssh-ed25519', Buffer.from([1, 2, 3]), '');
    const r = new WireReader(buf);
    expect(r.readUint32()).toBe(7);
    expect(r.readText()).toBe('ssh-ed25519');
    expect([...r.readString()]).toEqual([1, 2, 3]);
    expect(r.readString().length).toBe(0);
    expect(r.remaining).toBe(0);
    expect(() => r.expectEnd()).not.toThrow();
  });

  it('encodes uint32 big-endian and strings with a length prefix', () => {
    expect([...encodeUint32(0x01020304)]).toEqual([1, 2, 3, 4]);
    expect([...encodeString('ab')]).toEqual([0, 0, 0, 2, 0x61, 0x62]);
    expect(() => encodeUint32(-1)).toThrow(RangeError);
    expect(() => encodeUint32(2 ** 32)).toThrow(RangeError);
  });

  it('refuses a truncated uint32', () => {
    const r = new WireReader(Buffer.from([0, 0, 1]));
    expect(() => r.readUint32()).toThrow(WireFormatError);
  });

  it('refuses a string longer than what remains, without allocating it', () => {
    const huge = Buffer.concat([encodeUint32(0xffffffff), Buffer.from('abc')]);
    expect(() => new WireReader(huge).readString()).toThrow(WireFormatError);
    const oneShort = Buffer.concat([encodeUint32(4), Buffer.from('abc')]);
    expect(() => new WireReader(oneShort).readString()).toThrow(/declares 4 bytes but only 3 remain/);
  });

  it('refuses every truncation of a valid structure', () => {
    const buf = encodeFields('ssh-ed25519', Buffer.alloc(32, 9), 'namespace');
    for (let n = 0; n < buf.length; n++) {
      const r = new WireReader(buf.subarray(0, n));
      expect(() => {
        r.readText();
        r.readString();
        r.readText();
      }, `truncated at ${n}`).toThrow(WireFormatError);
    }
  });

  it('refuses negative or non-integer byte counts', () => {
    const r = new WireReader(Buffer.alloc(8));
    expect(() => r.readBytes(-1)).toThrow(WireFormatError);
    expect(() => r.readBytes(1.5)).toThrow(WireFormatError);
    expect(() => r.readBytes(Number.NaN)).toThrow(WireFormatError);
    expect(r.remaining).toBe(8);
  });

  it('reports trailing bytes', () => {
    const r = new WireReader(Buffer.concat([encodeString('x'), Buffer.from([0])]));
    r.readString();
    expect(() => r.expectEnd('thing')).toThrow(/1 unexpected trailing bytes after thing/);
  });

  it('refuses invalid UTF-8 in names', () => {
    const r = new WireReader(encodeString(Buffer.from([0x66, 0xff, 0xfe])));
    expect(() => r.readText('namespace')).toThrow(/namespace is not valid UTF-8/);
  });

  it('reads correctly from a view into a larger buffer', () => {
    const big = Buffer.concat([Buffer.from('junkjunk'), encodeString('hello'), Buffer.from('tail')]);
    const view = big.subarray(8, 8 + 9);
    const r = new WireReader(view);
    expect(r.readText()).toBe('hello');
    expect(r.remaining).toBe(0);
    expect(() => r.readByte()).toThrow(WireFormatError);
  });
});

describe('armor', () => {
  it('wraps base64 at 70 columns between BEGIN and END lines', () => {
    const data = Buffer.from(Array.from({ length: 300 }, (_, i) => i % 256));
    const text = armor('SSH SIGNATURE', data);
    const lines = text.split('\n');
    expect(lines[0]).toBe('-----BEGIN SSH SIGNATURE-----');
    expect(lines.at(-2)).toBe('-----END SSH SIGNATURE-----');
    expect(lines.at(-1)).toBe('');
    const body = lines.slice(1, -2);
    expect(body.slice(0, -1).every((l) => l.length === ARMOR_WRAP)).toBe(true);
    expect(body.at(-1)!.length).toBeLessThanOrEqual(ARMOR_WRAP);
    expect(ARMOR_WRAP).toBe(70);
  });

  it('round-trips data of every small size', () => {
    for (let n = 1; n < 200; n++) {
      const data = Buffer.from(Array.from({ length: n }, (_, i) => (i * 31 + n) % 256));
      expect(dearmor('X', armor('X', data)).equals(data), `size ${n}`).toBe(true);
    }
  });

  it('tolerates CRLF and surrounding whitespace', () => {
    const data = Buffer.from('some bytes that need more than one line of base64 to be armored properly, yes');
    const crlf = `\n\n  ${armor('SSH SIGNATURE', data).replace(/\n/g, '\r\n')}  \n`;
    expect(dearmor('SSH SIGNATURE', crlf).equals(data)).toBe(true);
  });

  it('refuses wrong labels, missing END, text after END, and junk in the base64', () => {
    const good = armor('SSH SIGNATURE', Buffer.from('hello'));
    expect(() => dearmor('OPENSSH PRIVATE KEY', good)).toThrow(WireFormatError);
    expect(() => dearmor('SSH SIGNATURE', good.replace('-----END SSH SIGNATURE-----', ''))).toThrow(/missing/);
    expect(() => dearmor('SSH SIGNATURE', `${good}trailing`)).toThrow(/after/);
    expect(() => dearmor('SSH SIGNATURE', good.replace('aGVsbG8=', 'aGVs*bG8='))).toThrow(/base64/);
    expect(() => dearmor('SSH SIGNATURE', '-----BEGIN SSH SIGNATURE-----\n-----END SSH SIGNATURE-----')).toThrow(/no data/);
  });
});

describe('decodeBase64Strict', () => {
  it('accepts canonical base64 and refuses what Node would silently skip', () => {
    expect(decodeBase64Strict('aGVsbG8=').toString()).toBe('hello');
    expect(decodeBase64Strict('').length).toBe(0);
    for (const bad of ['aGVsbG8', 'aGVs bG8=', 'aGVsbG8==', 'a===', '!!!!', 'aGVs\nbG8=', 'aGVsbG8=aGVs']) {
      expect(() => decodeBase64Strict(bad), bad).toThrow(WireFormatError);
    }
  });
});

describe('public keys and fingerprints', () => {
  // Cross-checked with `ssh-keygen -l -f` on this key.
  const blob = Buffer.from('AAAAC3NzaC1lZDI1NTE5AAAAIB6xr5wIG78rIO2P5IxekWv1oBjOPCWhoZ/fcuBdqrFA', 'base64');

  it('prints SHA256 fingerprints the way ssh-keygen does', () => {
    expect(sha256Fingerprint(blob)).toBe('SHA256:BgShkASOk2zIC0O3ZsRBt6+tjgpNrqh77hX7T7dTdYg');
  });

  it('formats public key lines', () => {
    expect(publicKeyType(blob)).toBe('ssh-ed25519');
    expect(formatPublicKeyLine(blob)).toBe('ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB6xr5wIG78rIO2P5IxekWv1oBjOPCWhoZ/fcuBdqrFA');
    expect(formatPublicKeyLine(blob, 'me@host')).toMatch(/ me@host$/);
  });

  it('decodes ed25519 blobs and refuses other shapes', () => {
    const raw = decodeEd25519PublicKey(blob);
    expect(raw.length).toBe(32);
    expect(encodeEd25519PublicKey(raw).equals(blob)).toBe(true);
    expect(() => decodeEd25519PublicKey(encodeFields('ssh-ed25519', Buffer.alloc(31)))).toThrow(/31 bytes/);
    expect(() => decodeEd25519PublicKey(encodeFields('ssh-rsa', Buffer.alloc(32)))).toThrow(/ssh-rsa/);
    expect(() => decodeEd25519PublicKey(Buffer.concat([blob, Buffer.from([0])]))).toThrow(/trailing/);
    expect(() => decodeEd25519PublicKey(blob.subarray(0, 20))).toThrow(WireFormatError);
  });
});
