/**
 * Node-only file helpers shared by the UltraSketch packages (the pipeline and ste-trainer/node depend on this
 * package, never on each other for it). Nothing browser-side may import it: it uses node:fs.
 */
export { describeFileKind, temporaryPathFor, writeFileAtomic } from './atomic.js';
export type { WriteAtomicOptions } from './atomic.js';
