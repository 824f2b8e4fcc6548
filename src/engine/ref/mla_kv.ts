// CPU float64 oracle of the MLA key/value assembly (tests only). Same signatures as ops/mla_kv.ts.
// k = [kv_b nope part | shared rope key] per head, v = kv_b value part; backward sums the rope key's gradient over heads.

import type { MlaKvDims } from '../ops/mla_kv.ts';

/** k [T, NH, DN+DR], v [T, NH, DV] <- kvB [T, NH, DN+DV], kRope [T, DR] */
export function mlaKvForward(k: Float64Array, v: Float64Array, kvB: ArrayLike<number>, kRope: ArrayLike<number>, d: MlaKvDims): void {
  const { T, NH, DN, DR, DV } = d;
  for (let t = 0; t < T; t++) {
    for (let h = 0; h < NH; h++) {
      const th = t * NH + h;
      for (let j = 0; j < DN; j++) k[th * (DN + DR) + j] = kvB[th * (DN + DV) + j]!;
      for (let r = 0; r < DR; r++) k[th * (DN + DR) + DN + r] = kRope[t * DR + r]!;
      for (let c = 0; c < DV; c++) v[th * DV + c] = kvB[th * (DN + DV) + DN + c]!;
    }
  }
}

/** dkvB [T, NH, DN+DV] (=), dkRope [T, DR] (=) <- dk [T, NH, DN+DR], dv [T, NH, DV] */
export function mlaKvBackward(dkvB: Float64Array, dkRope: Float64Array, dk: ArrayLike<number>, dv: ArrayLike<number>, d: MlaKvDims): void {
  const { T, NH, DN, DR, DV } = d;
  dkRope.fill(0, 0, T * DR);
  for (let t = 0; t < T; t++) {
    for (let h = 0; h < NH; h++) {
      const th = t * NH + h;
      for (let j = 0; j < DN; j++) dkvB[th * (DN + DV) + j] = dk[th * (DN + DR) + j]!;
      for (let c = 0; c < DV; c++) dkvB[th * (DN + DV) + DN + c] = dv[th * DV + c]!;
      for (let r = 0; r < DR; r++) dkRope[t * DR + r] += dk[th * (DN + DR) + DN + r]!;
    }
  }
}
