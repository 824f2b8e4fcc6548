// CPU float64 oracle of the elementwise ops (tests only). Same signatures as ops/elementwise.ts, minus GPU scratch buffers.
// bf16 input is given as u32 words (two bf16 each, low half first), as on the GPU.

type Num = ArrayLike<number>;

export function add(out: Float64Array, a: Num, b: Num, n: number): void {
  for (let i = 0; i < n; i++) out[i] = a[i]! + b[i]!;
}

export function addInPlace(acc: Float64Array, b: Num, n: number): void {
  for (let i = 0; i < n; i++) acc[i] += b[i]!;
}

export function absAddInPlace(acc: Float64Array, b: Num, n: number): void {
  for (let i = 0; i < n; i++) acc[i] += Math.abs(b[i]!);
}

export function scale(out: Float64Array, a: Num, s: number, n: number): void {
  for (let i = 0; i < n; i++) out[i] = s * a[i]!;
}

export function scaleInPlace(buf: Float64Array, s: number, n: number): void {
  for (let i = 0; i < n; i++) buf[i] *= s;
}

export function fill(buf: Float64Array, value: number, n: number, offset = 0): void {
  buf.fill(value, offset, offset + n);
}

export function convertBf16ToF32(out: Float64Array, inPacked: Uint32Array, n: number, inOffset = 0, outOffset = 0): void {
  const bits = new Uint32Array(1), f = new Float32Array(bits.buffer);
  for (let i = 0; i < n; i++) {
    const e = inOffset + i;
    bits[0] = e & 1 ? inPacked[e >>> 1]! & 0xffff0000 : inPacked[e >>> 1]! << 16;
    out[outOffset + i] = f[0]!;
  }
}

export function clamp(out: Float64Array, x: Num, lo: number, hi: number, n: number): void {
  for (let i = 0; i < n; i++) out[i] = Math.min(Math.max(x[i]!, lo), hi);
}

/** torch.clamp's rule: the gradient passes where lo <= x <= hi (boundaries included). */
export function clampBackward(dx: Float64Array, dy: Num, x: Num, lo: number, hi: number, n: number): void {
  for (let i = 0; i < n; i++) dx[i] = x[i]! >= lo && x[i]! <= hi ? dy[i]! : 0;
}

const sigmoid = (v: number) => 1 / (1 + Math.exp(-v));

export function siluMul(h: Float64Array, g: Num, u: Num, n: number): void {
  for (let i = 0; i < n; i++) h[i] = g[i]! * sigmoid(g[i]!) * u[i]!;
}

export function siluMulBackward(dg: Float64Array, du: Float64Array, dh: Num, g: Num, u: Num, n: number): void {
  for (let i = 0; i < n; i++) {
    const s = sigmoid(g[i]!);
    dg[i] = dh[i]! * u[i]! * s * (1 + g[i]! * (1 - s));
    du[i] = dh[i]! * g[i]! * s;
  }
}

export function sigmoidGate(out: Float64Array, s: Num, y: Num, rows: number, cols: number): void {
  for (let t = 0; t < rows; t++) for (let d = 0; d < cols; d++) out[t * cols + d] = sigmoid(s[t]!) * y[t * cols + d]!;
}

export function sigmoidGateBackward(ds: Float64Array, dy: Float64Array, dout: Num, s: Num, y: Num, rows: number, cols: number): void {
  for (let t = 0; t < rows; t++) {
    const g = sigmoid(s[t]!);
    let acc = 0;
    for (let d = 0; d < cols; d++) {
      acc += dout[t * cols + d]! * y[t * cols + d]!;
      dy[t * cols + d] = g * dout[t * cols + d]!;
    }
    ds[t] = g * (1 - g) * acc;
  }
}

export function sumSquares(out: Float64Array, x: Num, n: number, accumulate = false): void {
  let s = 0;
  for (let i = 0; i < n; i++) s += x[i]! * x[i]!;
  out[0] = (accumulate ? out[0]! : 0) + s;
}

export function nonFiniteCount(out: Uint32Array, x: Num, n: number, accumulate = false): void {
  let c = 0;
  for (let i = 0; i < n; i++) if (!Number.isFinite(x[i]!)) c++;
  out[0] = (accumulate ? out[0]! : 0) + c;
}
