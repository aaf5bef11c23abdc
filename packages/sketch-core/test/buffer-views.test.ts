import { Buffer } from 'node:buffer';
import { Rng } from '@ultrasketch/core';
import { describe, expect, it } from 'vitest';
import { sketchCodec } from '../src/index.js';

// Stored tensors read from a file are views into one big Node Buffer; the codec must copy only its own bytes.
describe('sketch fromTensors on views into a larger Node Buffer', () => {
  it.each(['int8', 'f16', 'f32'])('%s states round-trip', (state) => {
    const w = new Rng(5).normalArray(20 * 30);
    const options = sketchCodec.resolveOptions({ bpw: 2, state });
    const p = sketchCodec.encode(w, 20, 30, options, { name: 't', seed: 3 });
    const tensors = sketchCodec.toTensors(p);
    const file = Buffer.alloc(1 << 16, 0x55);
    let offset = 64;
    const views: typeof tensors = {};
    for (const [k, t] of Object.entries(tensors)) {
      file.set(t.data, offset);
      views[k] = { ...t, data: file.subarray(offset, offset + t.data.byteLength) };
      offset += t.data.byteLength + 8;
    }
    const back = sketchCodec.fromTensors(views, 20, 30, options, 'file.usk');
    expect([...sketchCodec.decode(back)]).toEqual([...sketchCodec.decode(p)]);
  });
});
