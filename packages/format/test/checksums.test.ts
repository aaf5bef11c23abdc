import { createHash } from 'node:crypto';
import { Rng } from '@ultrasketch/core';
import { describe, expect, it } from 'vitest';
import { crc32, crc32Tag, sha256Hex } from '../src/index.js';

/**
 * Known answers for the two checksums bundles rely on. Checking them only against the code's own output
 * would let a wrong polynomial or a wrong round constant pass (the writer and the reader would agree on
 * the wrong value), so these are published values, plus node:crypto as an independent SHA-256.
 */

const ascii = (s: string) => new TextEncoder().encode(s);

describe('CRC-32 (IEEE 802.3 / zlib)', () => {
  it('crc32("123456789") is 0xcbf43926, the standard check value', () => {
    expect(crc32(ascii('123456789'))).toBe(0xcbf43926);
    expect(crc32Tag(ascii('123456789'))).toBe('crc32:cbf43926');
  });

  it('matches further published values (empty input, "a", the pangram)', () => {
    expect(crc32(new Uint8Array())).toBe(0);
    expect(crc32(ascii('a'))).toBe(0xe8b7be43);
    expect(crc32(ascii('The quick brown fox jumps over the lazy dog'))).toBe(0x414fa339);
    // The tag keeps leading zeros: 8 hex digits always.
    expect(crc32Tag(new Uint8Array())).toBe('crc32:00000000');
  });
});

describe('SHA-256 (FIPS 180-4)', () => {
  it.each([
    ['', 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'],
    ['abc', 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad'],
    ['abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq', '248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1'],
    [
      'abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu',
      'cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1',
    ],
  ])('the FIPS / NIST example %j', (text, digest) => {
    expect(sha256Hex(ascii(text))).toBe(digest);
  });

  it('one million "a" (the long FIPS example: many blocks)', () => {
    expect(sha256Hex(new Uint8Array(1_000_000).fill(0x61))).toBe('cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0');
  });

  it('agrees with node:crypto on every length 0..300 (each padding case around the 56- and 64-byte edges)', () => {
    const rng = new Rng(7);
    for (let n = 0; n <= 300; n++) {
      const bytes = new Uint8Array(n);
      for (let i = 0; i < n; i++) bytes[i] = Math.floor(rng.next() * 256);
      expect(sha256Hex(bytes), `length ${n}`).toBe(createHash('sha256').update(bytes).digest('hex'));
    }
  });

  it('reads a view into a larger buffer at its own offset', () => {
    const big = ascii('xxabcxx');
    expect(sha256Hex(big.subarray(2, 5))).toBe('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
  });
});
