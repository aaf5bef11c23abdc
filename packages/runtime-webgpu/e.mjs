import { create } from 'webgpu';
import * as R from '/work/main/packages/runtime-webgpu/dist/index.js';
import * as S from '/work/main/packages/sketch-core/dist/index.js';
import { Rng } from '/work/main/packages/core/dist/index.js';
S.registerAll();
const gpu = create([]); const ctx = await R.GpuContext.create(gpu);
const rows = 512, cols = 2048;
const rng = new Rng(1);
const p = S.hashedNetsCodec.encode(rng.normalArray(rows * cols), rows, cols, S.hashedNetsCodec.resolveOptions({ bpw: 0.5 }), { name: 'x', seed: 3 });
const base = R.sketchCode(0);
const variants = {
  full: base.wgsl,
  constW: base.wgsl.replace(/fn decode4\(row: u32, j0: u32\) -> vec4<f32> \{/, 'fn decode4(row: u32, j0: u32) -> vec4<f32> {\n  if (row < 100000u) { return vec4<f32>(f32(colInfo[j0])); }'),
  hashOnly: base.wgsl.replace(/fn stv\(i: u32, si: u32\) -> f32 \{/, 'fn stv(i: u32, si: u32) -> f32 {\n  if (si < 1000000u) { return f32(i); }'),
  f16only: base.wgsl.replace(/fn stv\(i: u32, si: u32\) -> f32 \{/, 'fn stv(i: u32, si: u32) -> f32 {\n  if (si < 1000000u) { return unpack2x16float(states[i >> 1u] >> ((i & 1u) << 4u)).x; }'),
};
for (const [name, wgsl] of Object.entries(variants)) {
  const code = { ...base, key: `exp-${name}`, wgsl };
  R.registerGpuKernel(`exp-${name}`, (params, b) => {
    const lin = R.getGpuKernel('hashednets')(params, b);
    // reuse its buffers by building a BlockedLinear with the same blocks
    return new R.BlockedLinear('x', params.rows, params.cols, code, lin.blocks, b, null);
  });
  const runner = await R.LinearRunner.create(ctx, `exp-${name}`, p, { maxBatch: 1, lanes: 1 });
  await runner.time(1, 1, () => performance.now());
  const c0 = process.cpuUsage();
  const ms = await runner.time(1, 3, () => performance.now());
  const c = process.cpuUsage(c0);
  console.error(name, ms.toFixed(1), 'ms wall', ((c.user + c.system) / 3000).toFixed(1), 'ms cpu');
}
ctx.destroy();
