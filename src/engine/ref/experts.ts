// CPU float64 oracle of the routed experts (tests only). Same signatures as ops/experts.ts; weights as decoded numbers.
// Per expert-sorted row r (expert e, pair t*K+k): G = x_t·gate_e^T, U = x_t·up_e^T, A = silu(G)*U, Y = A·down_e^T.

import type { ExpertRouting, ExpertsDims, ExpertWeights } from '../ops/experts.ts';

type Arr = ArrayLike<number>;

export interface RefSaved {
  G: Float64Array; // [R, IE]
  U: Float64Array; // [R, IE]
  A: Float64Array; // [R, IE]
  Y: Float64Array; // [R, H]
}

export interface RefGrads {
  dY: Float64Array; // [R, H]
  dG: Float64Array; // [R, IE]
  dU: Float64Array; // [R, IE]
  dXr: Float64Array; // [R, H]
}

const sigmoid = (g: number) => 1 / (1 + Math.exp(-g));

/** Expert of each sorted row, from offsets [E+1]. */
export function rowExperts(offsets: Arr, E: number): Uint32Array {
  const out = new Uint32Array(offsets[E]!);
  for (let e = 0; e < E; e++) for (let r = offsets[e]!; r < offsets[e + 1]!; r++) out[r] = e;
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// forward

/** out [T, H] = sum_k topW[t,k] * Y[slot(t,k)];  saved G, U, A [R, IE], Y [R, H]. */
export function expertsForward(out: Float64Array, s: RefSaved, x: Arr, w: ExpertWeights<Arr>, topW: Arr, route: ExpertRouting<Arr>, d: ExpertsDims): void {
  const { T, H, IE, K, E } = d;
  const R = T * K;
  const ex = rowExperts(route.offsets, E);
  const go = d.gateOffset ?? 0, uo = d.upOffset ?? 0, dn = d.downOffset ?? 0;
  for (let r = 0; r < R; r++) {
    const e = ex[r]!, t = Math.floor(route.rowPair[r]! / K);
    for (let i = 0; i < IE; i++) {
      let g = 0, u = 0;
      for (let h = 0; h < H; h++) {
        g += x[t * H + h]! * w.gate[go + (e * IE + i) * H + h]!;
        u += x[t * H + h]! * w.up[uo + (e * IE + i) * H + h]!;
      }
      s.G[r * IE + i] = g;
      s.U[r * IE + i] = u;
      s.A[r * IE + i] = g * sigmoid(g) * u;
    }
    for (let h = 0; h < H; h++) {
      let y = 0;
      for (let i = 0; i < IE; i++) y += s.A[r * IE + i]! * w.down[dn + (e * H + h) * IE + i]!;
      s.Y[r * H + h] = y;
    }
  }
  out.fill(0);
  for (let t = 0; t < T; t++)
    for (let k = 0; k < K; k++) {
      const r = route.slot[t * K + k]!;
      for (let h = 0; h < H; h++) out[t * H + h] += topW[t * K + k]! * s.Y[r * H + h]!;
    }
}

// ---------------------------------------------------------------------------------------------------------------
// backward

/**
 * dx [T, H] (=), dTopW [T, K] (=), and per-row grads dY [R, H], dG, dU [R, IE], dXr [R, H] (=)
 * <- dOut [T, H], weights, topW [T, K], saved G, U, Y.
 */
export function expertsBackward(
  dx: Float64Array,
  dTopW: Float64Array,
  g: RefGrads,
  dOut: Arr,
  w: ExpertWeights<Arr>,
  topW: Arr,
  s: RefSaved,
  route: ExpertRouting<Arr>,
  d: ExpertsDims,
): void {
  const { T, H, IE, K, E } = d;
  const R = T * K;
  const ex = rowExperts(route.offsets, E);
  const go = d.gateOffset ?? 0, uo = d.upOffset ?? 0, dn = d.downOffset ?? 0;
  for (let t = 0; t < T; t++)
    for (let k = 0; k < K; k++) {
      const r = route.slot[t * K + k]!;
      let acc = 0;
      for (let h = 0; h < H; h++) {
        acc += dOut[t * H + h]! * s.Y[r * H + h]!;
        g.dY[r * H + h] = topW[t * K + k]! * dOut[t * H + h]!;
      }
      dTopW[t * K + k] = acc;
    }
  for (let r = 0; r < R; r++) {
    const e = ex[r]!;
    for (let i = 0; i < IE; i++) {
      let da = 0;
      for (let h = 0; h < H; h++) da += g.dY[r * H + h]! * w.down[dn + (e * H + h) * IE + i]!;
      const gv = s.G[r * IE + i]!, sg = sigmoid(gv);
      g.dG[r * IE + i] = da * s.U[r * IE + i]! * sg * (1 + gv * (1 - sg));
      g.dU[r * IE + i] = da * gv * sg;
    }
    for (let h = 0; h < H; h++) {
      let v = 0;
      for (let i = 0; i < IE; i++)
        v += g.dG[r * IE + i]! * w.gate[go + (e * IE + i) * H + h]! + g.dU[r * IE + i]! * w.up[uo + (e * IE + i) * H + h]!;
      g.dXr[r * H + h] = v;
    }
  }
  dx.fill(0);
  for (let t = 0; t < T; t++)
    for (let k = 0; k < K; k++) {
      const r = route.slot[t * K + k]!;
      for (let h = 0; h < H; h++) dx[t * H + h] += g.dXr[r * H + h]!;
    }
}

/** Dense expert weight grads (+=): dGate, dUp [E, IE, H] (dG^T·x per expert), dDown [E, H, IE] (dY^T·A). Null = skip. */
export function expertsBackwardWeights(
  dW: ExpertWeights<Float64Array | null>,
  x: Arr,
  s: RefSaved,
  g: RefGrads,
  route: ExpertRouting<Arr>,
  d: ExpertsDims,
): void {
  const { T, H, IE, K, E } = d;
  const R = T * K;
  const ex = rowExperts(route.offsets, E);
  for (let r = 0; r < R; r++) {
    const e = ex[r]!, t = Math.floor(route.rowPair[r]! / K);
    for (let i = 0; i < IE; i++)
      for (let h = 0; h < H; h++) {
        if (dW.gate) dW.gate[(e * IE + i) * H + h] += g.dG[r * IE + i]! * x[t * H + h]!;
        if (dW.up) dW.up[(e * IE + i) * H + h] += g.dU[r * IE + i]! * x[t * H + h]!;
        if (dW.down) dW.down[(e * H + h) * IE + i] += g.dY[r * H + h]! * s.A[r * IE + i]!;
      }
  }
}
