import { existsSync } from 'node:fs';
import { WebGpuError } from './errors.js';

/**
 * The Node entry (`@ultrasketch/runtime-webgpu/node`), kept out of the main entry so that the main entry stays
 * free of `node:*`: a `GPU` object from the `webgpu` package (Dawn), for `WebGpuSession.fromWeights/fromBundle`.
 *
 * Dawn needs a Vulkan (Linux), Metal (macOS) or D3D12 (Windows) driver. On a Linux machine without a GPU
 * driver Dawn finds no adapter; when SwiftShader (a CPU Vulkan, shipped by Debian's `chromium` package) is
 * installed, `nodeGpu()` then points the Vulkan loader at it and tries again — a correctness fallback, a
 * hundred times slower than a GPU (the session's `adapter.software` says so). VK_ICD_FILENAMES set by the
 * caller is left alone.
 */
export const SWIFTSHADER_ICD = '/usr/lib/chromium/vk_swiftshader_icd.json';

export interface NodeGpuOptions {
  /** Fall back to SwiftShader when no adapter is found (default true). */
  softwareFallback?: boolean;
  /** The SwiftShader ICD manifest (default Debian's). */
  icd?: string;
}

// Dawn frees its instance when the GPU object is collected; sessions keep their own reference too.
const keep: unknown[] = [];

export async function nodeGpu(options: NodeGpuOptions = {}): Promise<GPU> {
  let mod: { create(flags: string[]): GPU };
  try {
    mod = (await import('webgpu')) as unknown as { create(flags: string[]): GPU };
  } catch (cause) {
    throw webgpuImportError(cause);
  }
  const first = mod.create([]);
  keep.push(first);
  if (await first.requestAdapter()) return first;
  const icd = options.icd ?? SWIFTSHADER_ICD;
  if ((options.softwareFallback ?? true) && !process.env.VK_ICD_FILENAMES && existsSync(icd)) {
    process.env.VK_ICD_FILENAMES = icd; // read by the Vulkan loader when Dawn creates its next instance
    const second = mod.create([]);
    keep.push(second);
    return second;
  }
  return first; // GpuContext.create then fails with `no-adapter` and its hint
}

/**
 * The typed error for a failed `import('webgpu')`. The package is an optional peer (132 MB of Dawn binaries
 * that CPU-only users should not have to download), so "not installed" is the common case and its hint is the
 * install command; any other failure (the package is there but its native binding does not load, e.g. no
 * Vulkan loader) says so with the cause, since `npm install webgpu` would not fix it.
 */
export function webgpuImportError(cause: unknown): WebGpuError {
  const code = (cause as { code?: unknown } | null)?.code;
  const message = cause instanceof Error ? cause.message : String(cause);
  const notFound = (code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND') && /['"]webgpu['"]/.test(message);
  if (notFound) {
    return new WebGpuError('no-webgpu', "the 'webgpu' package (Dawn for Node, an optional peer dependency) is not installed", {
      hint: 'npm install webgpu — needed only to run on WebGPU in Node (--runtime webgpu); the CPU runtime works without it',
      cause,
    });
  }
  return new WebGpuError('no-webgpu', `the 'webgpu' package (Dawn for Node) is installed but failed to load: ${message}`, {
    hint: 'Dawn needs a Vulkan loader on Linux (apt-get install libvulkan1); reinstall webgpu if its binary is missing for this platform',
    cause,
  });
}
