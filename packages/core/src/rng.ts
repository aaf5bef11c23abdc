/**
 * A small, fast, seeded pseudo-random generator (SplitMix32 seeding a xoshiro128** state).
 * Deterministic across platforms: the same seed gives the same stream everywhere, which is what makes
 * sampling, synthetic test matrices and (later) hash seeds reproducible.
 */
export class Rng {
  private s0: number;
  private s1: number;
  private s2: number;
  private s3: number;

  constructor(seed: number | bigint = 0) {
    // Seeds up to 64 bits. The low word is expanded into the four state words with SplitMix32; a non-zero
    // high word is expanded with a second SplitMix32 of a different increment and XORed in. So seeds below
    // 2^32 keep the streams they have always had, and seeds that differ only above bit 32 get unrelated
    // states. (An earlier version XOR-folded the high word into the low one before expanding, which made
    // e.g. 2^32 + 1 and 2^64 - 1 give the same stream, and 2^32 a one-step shift of seed 0's state.)
    const big = BigInt.asUintN(64, BigInt(seed));
    const lo = splitMix32(Number(big & 0xffffffffn), 0x9e3779b9);
    this.s0 = lo();
    this.s1 = lo();
    this.s2 = lo();
    this.s3 = lo();
    const hiWord = Number(big >> 32n);
    if (hiWord !== 0) {
      // A different increment, so the two expansions can never cancel out: that would need
      // mix(lo + i·0x9e3779b9) = mix(hi + i·0x6a09e667) for i = 1..4, and the finalizer is a bijection.
      const hi = splitMix32(hiWord, 0x6a09e667);
      this.s0 = (this.s0 ^ hi()) >>> 0;
      this.s1 = (this.s1 ^ hi()) >>> 0;
      this.s2 = (this.s2 ^ hi()) >>> 0;
      this.s3 = (this.s3 ^ hi()) >>> 0;
    }
    if ((this.s0 | this.s1 | this.s2 | this.s3) === 0) this.s0 = 1;
  }

  /** Next uniformly distributed unsigned 32-bit integer. */
  nextU32(): number {
    const result = Math.imul(rotl(Math.imul(this.s1, 5), 7), 9) >>> 0;
    const t = this.s1 << 9;
    this.s2 ^= this.s0;
    this.s3 ^= this.s1;
    this.s1 ^= this.s2;
    this.s0 ^= this.s3;
    this.s2 ^= t;
    this.s3 = rotl(this.s3, 11);
    return result;
  }

  /** Uniform float in [0, 1) with 53 random bits. */
  next(): number {
    const hi = this.nextU32() >>> 5; // 27 bits
    const lo = this.nextU32() >>> 6; // 26 bits
    return (hi * 67108864 + lo) / 9007199254740992;
  }

  /** Uniform integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  /** Standard normal sample (Box–Muller). */
  normal(): number {
    let u = 0;
    while (u === 0) u = this.next();
    const v = this.next();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  }

  /** A Float32Array of normal samples with the given standard deviation. */
  normalArray(n: number, std = 1): Float32Array<ArrayBuffer> {
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = this.normal() * std;
    return out;
  }
}

/** A SplitMix32 stream: a Weyl sequence with the given increment, passed through a 32-bit finalizer. */
function splitMix32(seed: number, increment: number): () => number {
  let x = seed | 0;
  return () => {
    x = (x + increment) | 0;
    let z = x;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    return (z ^ (z >>> 16)) >>> 0;
  };
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}
