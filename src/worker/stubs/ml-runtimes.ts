// Contract: stands in for onnxruntime-web, onnxruntime-node and sharp in the app build (vite.config.ts resolve.alias).
// The app uses @huggingface/transformers for tokenizers only, which need none of them; whatever reaches them fails loudly.

function unavailable(what: string): Error {
  return new Error(`${what} is not part of this build: USAF Web uses @huggingface/transformers for tokenizers only`);
}

/** onnxruntime's settings object; empty, so transformers.js configures no wasm paths (and fetches nothing). */
export const env: Record<string, unknown> = {};

export const InferenceSession = {
  create: async (): Promise<never> => {
    throw unavailable('ONNX Runtime (InferenceSession)');
  },
};

export class Tensor {
  constructor() {
    throw unavailable('ONNX Runtime (Tensor)');
  }
}

export function registerBackend(): void {
  throw unavailable('ONNX Runtime (registerBackend)');
}

/** sharp (images) and `import ort from 'onnxruntime-web'` alike. */
export default function sharp(): never {
  throw unavailable('sharp (image decoding)');
}
