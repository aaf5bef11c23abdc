/**
 * The real > 2 GiB check of `readFileChecked` (issue 18), kept out of the test suite on purpose: it holds a
 * 2.1 GB buffer and reads 2.1 GB (of a sparse file's zeros, from the page cache), which is too much memory and
 * time for CI's shared 2-core machine. The suite tests the same code's chunk loop and limits with a small chunk
 * size and a small maxBytes instead (packages/pipeline/test/files.test.ts).
 *
 *   pnpm build && node bench/read-large.mjs [--gib 2.1]
 *
 * Makes a sparse file of that size in a temporary directory (no disk blocks used), writes a marker at the
 * start, in the middle and at the end, reads it with readFileChecked, checks the length and the markers (the
 * bytes past 2^31 are where a 32-bit offset would go wrong), shows that readFileSync refuses the same file
 * (ERR_FS_FILE_TOO_LARGE), and deletes the file.
 */
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, truncateSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readFileChecked } from '../packages/pipeline/dist/index.js';
import { printHelp } from './lib.mjs';

if (process.argv.includes('--help')) printHelp(import.meta.url);
const i = process.argv.indexOf('--gib');
const gib = i >= 0 ? Number(process.argv[i + 1]) : 2.1;
const size = Math.round(gib * 2 ** 30);
if (!(size > 2 ** 31)) throw new Error(`--gib ${gib}: use more than 2 GiB, that is the point of this check`);

const dir = mkdtempSync(join(tmpdir(), 'usk-read-large-'));
const path = join(dir, 'sparse.bin');
try {
  writeFileSync(path, '');
  truncateSync(path, size);
  const markers = [
    [0, 'START'],
    [2 ** 31 + 12345, 'PAST-2GiB'],
    [size - 3, 'END'],
  ];
  const fd = openSync(path, 'r+');
  for (const [at, text] of markers) writeSync(fd, Buffer.from(text), 0, text.length, at);
  closeSync(fd);

  let refused = 'no';
  try {
    readFileSync(path);
  } catch (err) {
    refused = err.code;
  }
  console.log(`readFileSync on ${size} bytes: ${refused === 'no' ? 'read it' : `refused (${refused})`}`);

  const t0 = performance.now();
  const bytes = readFileChecked(path, 'large file');
  const seconds = (performance.now() - t0) / 1000;
  if (bytes.byteLength !== size) throw new Error(`read ${bytes.byteLength} bytes, expected ${size}`);
  for (const [at, text] of markers) {
    const got = Buffer.from(bytes.subarray(at, at + text.length)).toString();
    if (got !== text) throw new Error(`marker at ${at}: got ${JSON.stringify(got)}, expected ${JSON.stringify(text)}`);
  }
  if (bytes[1000] !== 0 || bytes[size - 4] !== 0) throw new Error('the sparse holes did not read as zeros');
  console.log(`readFileChecked: ${size} bytes in ${seconds.toFixed(2)} s, markers at 0, 2^31 + 12345 and the end all correct`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
