// MLA key/value assembly launchers (DeepSeek-V3): kv_b's per-head output + the shared rope key -> attention's k and v,
// and the backward. Same signatures as ref/mla_kv.ts: outputs, inputs, dims. All f32.

import type { Encoder } from '../gpu/encoder.ts';
import { kernel } from '../gpu/kernel.ts';
import { flatGrid } from './elementwise.ts';
import src from '../../../shaders/mla_kv.wgsl?raw';
import bwdSrc from '../../../shaders/mla_kv_backward.wgsl?raw';

/** T tokens, NH heads, DN/DR nope/rope key widths, DV value width. */
export interface MlaKvDims {
  T: number;
  NH: number;
  DN: number;
  DR: number;
  DV: number;
}

const WG = 256;

/** The `params` uniform of shaders/mla_kv.wgsl. */
export function mlaKvParams(d: MlaKvDims): Uint32Array {
  return Uint32Array.of(d.T, d.NH, d.DN, d.DR, d.DV);
}

function need(buf: GPUBuffer, n: number, what: string): void {
  if (buf.size < n * 4) throw new RangeError(`mla_kv: ${what} holds ${buf.size} bytes, needs ${n * 4}`);
}

/** k [T, NH, DN+DR] = [kvB[:, :, :DN] | kRope], v [T, NH, DV] = kvB[:, :, DN:] <- kvB [T, NH, DN+DV], kRope [T, DR] */
export function mlaKvForward(enc: Encoder, k: GPUBuffer, v: GPUBuffer, kvB: GPUBuffer, kRope: GPUBuffer, d: MlaKvDims): void {
  const { T, NH, DN, DR, DV } = d;
  need(k, T * NH * (DN + DR), 'k'); need(v, T * NH * DV, 'v'); need(kvB, T * NH * (DN + DV), 'kvB'); need(kRope, T * DR, 'kRope');
  const kf = kernel(enc.gpu, { name: 'mla_kv.forward', code: src, entryPoint: 'forward', constants: { WG } });
  const cost = { flops: 0, bytes: 4 * (T * NH * (DN + DV) + T * DR) + 4 * T * NH * (DN + DR + DV) };
  kf.dispatch(enc, [kvB, kRope, k, v], flatGrid(Math.ceil((T * NH * (DN + DR + DV)) / WG)), mlaKvParams(d), cost);
}

/** dkvB [T, NH, DN+DV] (=), dkRope [T, DR] (= sum over heads) <- dk [T, NH, DN+DR], dv [T, NH, DV] */
export function mlaKvBackward(enc: Encoder, dkvB: GPUBuffer, dkRope: GPUBuffer, dk: GPUBuffer, dv: GPUBuffer, d: MlaKvDims): void {
  const { T, NH, DN, DR, DV } = d;
  need(dk, T * NH * (DN + DR), 'dk'); need(dv, T * NH * DV, 'dv'); need(dkvB, T * NH * (DN + DV), 'dkvB'); need(dkRope, T * DR, 'dkRope');
  const params = mlaKvParams(d);
  const kkv = kernel(enc.gpu, { name: 'mla_kv.backward_kv', code: bwdSrc, entryPoint: 'backward_kv', constants: { WG } });
  kkv.dispatch(enc, [dk, dv, dkvB], flatGrid(Math.ceil((T * NH * (DN + DV)) / WG)), params, { flops: 0, bytes: 8 * T * NH * (DN + DV) });
  const kr = kernel(enc.gpu, { name: 'mla_kv.backward_rope', code: bwdSrc, entryPoint: 'backward_rope', constants: { WG } });
  kr.dispatch(enc, [dk, dkRope], flatGrid(Math.ceil((T * DR) / WG)), params, { flops: T * NH * DR, bytes: 4 * T * NH * DR + 4 * T * DR });
}
