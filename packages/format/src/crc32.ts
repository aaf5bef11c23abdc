/**
 * CRC-32 (IEEE 802.3, the zlib/PNG polynomial), table-driven, in plain TypeScript so that the format
 * package stays free of `node:*`. It detects accidental corruption (a flipped byte, a truncated copy); it is
 * not a defence against deliberate tampering.
 */
const TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

export function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = TABLE[(c ^ bytes[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** The checksum as stored in bundles: "crc32:" + 8 lowercase hex digits. */
export function crc32Tag(bytes: Uint8Array): string {
  return `crc32:${crc32(bytes).toString(16).padStart(8, '0')}`;
}
