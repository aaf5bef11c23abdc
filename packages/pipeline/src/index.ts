export { loadModel, findTokenizer, readFileChecked } from './load.js';
export type { LoadedModel, LoadOptions } from './load.js';
export { splitDocuments, documentTokenStream } from './text.js';
export { evaluate, logSumExp } from './evaluate.js';
export type { EvaluateOptions, EvaluateResult, EvaluateProgress, ScoringSession } from './evaluate.js';
