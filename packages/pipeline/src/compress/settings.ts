/**
 * Stage 1 of `compress`: resolve the caller's options into the settings every later stage reads, and refuse
 * everything that can be refused before any work (a bad flag, calibrating on the evaluation text, a finetuning
 * job that cannot run or fit, an output that is one of the inputs). Leftover temporaries of killed runs of the
 * same output are removed here too, so a resumed run leaves none behind.
 */
import { createHash } from 'node:crypto';
import { type Codec, ErrorCodes, UltraSketchError, getCodec } from '@ultrasketch/core';
import type { LinearKind } from '@ultrasketch/model';
import { codecUsesSaliency, evaluationOverlap, overlapError } from '../calibrate.js';
import { registerAllCodecs } from '../codecs.js';
import { assertOutputNotInput } from '../files.js';
import { assertTrainableConfig, finetuneMemory, finetuneProviderKind, validateFinetune } from '../finetune.js';
import { assertMemoryFor } from '../memory.js';
import { removeStaleTemporaries } from '../stale.js';
import type { CompressOptions } from '../compress.js';
import { type EmbeddingStorage, SMALL_MATRIX_POLICIES, type SmallMatrixPolicy, defaultLayers, embeddingCodec, parseLayers } from './defaults.js';
import { type CompressInput, inputFiles } from './input.js';

/** A codec id with raw options, as `embeddingCodec` gives them. */
export interface CodecChoice {
  id: string;
  options: Record<string, unknown>;
}

/** The resolved settings of one compress job. */
export interface CompressSettings {
  /** The codec of the compressed linears, and its resolved options. */
  codec: Codec;
  codecOptions: unknown;
  layers: LinearKind[];
  embeddings: EmbeddingStorage;
  embedding: CodecChoice;
  /** The classifier's storage; null when it is tied to the embedding. */
  classifierStorage: EmbeddingStorage | null;
  classifier: CodecChoice | undefined;
  /** Linears that are not compressed (and matrices the codec cannot reach) are stored in float f16. */
  keepFloat: CodecChoice;
  seed: number;
  smallMatrix: SmallMatrixPolicy;
  /** Whether the codec is given calibration statistics (it uses them, and they are given or computed now). */
  saliencyUsed: boolean;
}

export function resolveSettings(options: CompressOptions, model: CompressInput): CompressSettings {
  registerAllCodecs();
  const codec = getCodec(options.codec, undefined, '--codec');
  const codecOptions = codec.resolveOptions(options.codecOptions ?? {});
  const layers = options.layers === undefined ? defaultLayers(codec.id) : parseLayers(options.layers);
  const embeddings = options.embeddings ?? 'f16';
  const embedding = embeddingCodec(embeddings, '--embeddings');
  const classifierStorage = model.config.tiedClassifier ? null : (options.classifier ?? embeddings);
  const classifier = classifierStorage === null ? undefined : embeddingCodec(classifierStorage, '--classifier');
  if (options.finetune?.trainEmbedding) {
    for (const [flag, storage, c] of [['--embeddings', embeddings, embedding], ['--classifier', classifierStorage, classifier]] as const) {
      if (c !== undefined && c.id !== 'float') {
        throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, `--train-embedding trains float values, and ${flag} ${storage} stores ${c.id} codes`, {
          source: '--train-embedding',
          hint: `store it in float (${flag} f16), or drop --train-embedding`,
        });
      }
    }
  }
  const seed = options.seed ?? 0;
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) {
    throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, `seed ${seed} must be an integer in 0..4294967295`, { source: '--seed' });
  }
  const smallMatrix = options.smallMatrix ?? 'error';
  if (!SMALL_MATRIX_POLICIES.includes(smallMatrix)) {
    throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, `small-matrix policy ${JSON.stringify(smallMatrix)} is not one of ${SMALL_MATRIX_POLICIES.join(', ')}`, {
      source: '--small-matrix',
    });
  }
  const usesSaliency = codecUsesSaliency(codec.id, codecOptions);
  if (options.saliency !== undefined && options.calibrate !== undefined) {
    throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, 'pass either saliency statistics or a calibration text to compress, not both');
  }
  const saliencyUsed = usesSaliency && (options.saliency !== undefined || options.calibrate !== undefined);
  return {
    codec,
    codecOptions,
    layers,
    embeddings,
    embedding,
    classifierStorage,
    classifier,
    keepFloat: { id: 'float', options: { dtype: 'f16' } },
    seed,
    smallMatrix,
    saliencyUsed,
  };
}

/** The refusals that need no tensor: checked before anything is read, encoded or written. */
export function refuseBeforeWork(options: CompressOptions, model: CompressInput, settings: CompressSettings): void {
  if (settings.saliencyUsed && options.calibration && options.measureQuality) {
    const evalSha = createHash('sha256').update(options.measureQuality.text).digest('hex');
    if (evalSha === options.calibration.textSha256) {
      throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, 'refusing to calibrate on the evaluation text: the calibration and evaluation texts are identical', {
        source: options.calibration.textSource,
        hint: 'calibrate on calib.txt, evaluate on eval.txt (docs/evaluation.md)',
      });
    }
  }

  if (options.finetune) {
    // Refuse an impossible --train-mode, a flag the codec's training does not use, a model the trainer's graph
    // does not implement, a job that will not fit in memory, or a --resume without a checkpoint before encoding
    // every matrix, not after.
    const ft = options.finetune;
    validateFinetune(ft, settings.codec.id);
    assertTrainableConfig(model.config, model.path);
    const need = finetuneMemory(model.config, ft, model.weights === null);
    assertMemoryFor('finetuning', need, model.path, 'finetuning holds the float model, the student and their optimizer state in memory: use a smaller model or a machine with more memory, or compress without --finetune-steps (streamed, one layer at a time)');
    finetuneProviderKind(settings.codec.id, ft.mode ?? 'auto');
    if (ft.calibText !== undefined && (ft.data ?? 'calib') !== 'teacher' && options.measureQuality) {
      // The same document-level rule as the CLI (whitespace- and line-end-insensitive; supersets and pasted
      // stories count), so a library caller cannot train on the text it is then scored on.
      const err = overlapError(
        evaluationOverlap(ft.calibText, options.measureQuality.text),
        ft.calibSource ?? '--calib',
        options.measureQuality.textSource ?? '<evaluation text>',
      );
      if (err) throw err;
    }
  }

  // Temporary files of this output left by killed runs (`OUT.usk.tmp-<pid>-*`, dead writers only): removed on
  // every start, so a resumed run leaves none behind whether or not it gets as far as writing.
  if (options.output !== undefined) {
    // The library refuses what the CLI refuses: a bundle written over the model or tokenizer it reads.
    assertOutputNotInput(options.output, inputFiles(model));
    removeStaleTemporaries(options.output);
  }
}
