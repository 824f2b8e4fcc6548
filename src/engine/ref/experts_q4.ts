// CPU float64 oracle of the trained entries' part of the 4-bit experts' products (tests only): what the grouped GEMMs
// (ops/experts.ts with a sparse table of ops/experts_q4.ts) add to the products on W0, with Δ as dense tensors (zero where no entry): G space [2, E, IE, H] (gate then up), D space [E, H, IE]. Rows are the
// expert-sorted rows of moe_route (expert from offsets, token = rowPair / K).

import type { ExpertRouting, ExpertsDims } from '../ops/experts.ts';
import { rowExperts } from './experts.ts';

type Arr = ArrayLike<number>;
const sigmoid = (g: number) => 1 / (1 + Math.exp(-g));

/** Dense Δ [numel] = value − w0 at the active entries (values master) and the overlay entries (values overlay). */
export function expertsQ4Delta(numel: number, active: Arr, master: Arr, overlay: Arr, overlayVal: Arr, w0: Arr): Float64Array {
  const out = new Float64Array(numel);
  for (let j = 0; j < active.length; j++) out[active[j]!] = master[j]! - w0[active[j]!]!;
  for (let j = 0; j < overlay.length; j++) out[overlay[j]!] = overlayVal[j]! - w0[overlay[j]!]!;
  return out;
}

/** G, U [R, IE] += x_t·Δgate_eᵀ, x_t·Δup_eᵀ; A = silu(G)·U. */
export function expertsQ4GateUp(s: { G: Float64Array; U: Float64Array; A: Float64Array }, x: Arr, dG: Arr, route: Pick<ExpertRouting<Arr>, 'offsets' | 'rowPair'>, d: ExpertsDims): void {
  const { H, IE, E, K } = d;
  const ex = rowExperts(route.offsets, E);
  for (let r = 0; r < ex.length; r++) {
    const e = ex[r]!, t = Math.floor(route.rowPair[r]! / K);
    for (let c = 0; c < IE; c++) {
      let g = 0, u = 0;
      for (let h = 0; h < H; h++) {
        g += x[t * H + h]! * dG[(e * IE + c) * H + h]!;
        u += x[t * H + h]! * dG[((E + e) * IE + c) * H + h]!;
      }
      const at = r * IE + c;
      s.G[at] += g;
      s.U[at] += u;
      s.A[at] = s.G[at]! * sigmoid(s.G[at]!) * s.U[at]!;
    }
  }
}

/** Y [R, H] += A·Δdown_eᵀ. */
export function expertsQ4Down(Y: Float64Array, A: Arr, dD: Arr, route: Pick<ExpertRouting<Arr>, 'offsets'>, d: ExpertsDims): void {
  const { H, IE, E } = d;
  const ex = rowExperts(route.offsets, E);
  for (let r = 0; r < ex.length; r++) {
    for (let c = 0; c < H; c++) {
      let y = 0;
      for (let i = 0; i < IE; i++) y += A[r * IE + i]! * dD[(ex[r]! * H + c) * IE + i]!;
      Y[r * H + c] += y;
    }
  }
}

/** dA' = dY·Δdown_e; dG += dA'·U·silu'(G), dU += dA'·silu(G) ([R, IE]). */
export function expertsQ4BackwardAct(dGr: Float64Array, dUr: Float64Array, dY: Arr, G: Arr, U: Arr, dD: Arr, route: Pick<ExpertRouting<Arr>, 'offsets'>, d: ExpertsDims): void {
  const { H, IE, E } = d;
  const ex = rowExperts(route.offsets, E);
  for (let r = 0; r < ex.length; r++) {
    for (let c = 0; c < IE; c++) {
      let a = 0;
      for (let h = 0; h < H; h++) a += dY[r * H + h]! * dD[(ex[r]! * H + h) * IE + c]!;
      const at = r * IE + c, g = G[at]!, sg = sigmoid(g);
      dGr[at] += a * U[at]! * sg * (1 + g * (1 - sg));
      dUr[at] += a * g * sg;
    }
  }
}

/** dXr [R, H] += dG·Δgate_e + dU·Δup_e. */
export function expertsQ4BackwardInput(dXr: Float64Array, dGr: Arr, dUr: Arr, dG: Arr, route: Pick<ExpertRouting<Arr>, 'offsets'>, d: ExpertsDims): void {
  const { H, IE, E } = d;
  const ex = rowExperts(route.offsets, E);
  for (let r = 0; r < ex.length; r++) {
    const e = ex[r]!;
    for (let c = 0; c < H; c++) {
      let v = 0;
      for (let i = 0; i < IE; i++) v += dGr[r * IE + i]! * dG[(e * IE + i) * H + c]! + dUr[r * IE + i]! * dG[((E + e) * IE + i) * H + c]!;
      dXr[r * H + c] += v;
    }
  }
}
