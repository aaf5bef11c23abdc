export { NodeSession } from './session.js';
export type { SessionOptions, SessionGenerateOptions } from './session.js';
