// Text generation on the engine: a model (Hub folder or stored 4-bit model, optionally with a run's delta overlaid) on
// the GPU, the prompt prefilled into a KV cache, then one token per step, sampled on the host from the last logits row.

import type { GpuContext } from '../gpu/device.ts';
import type { Bytes } from '../io/byte-source.ts';
import { openCheckpoint } from '../io/checkpoint.ts';
import type { FileSet } from '../io/folder.ts';
import { parseConfig, withExpertLayout } from '../model/config.ts';
import type { ModelSpec } from '../model/spec.ts';
import { detectExpertLayout } from '../model/tensors.ts';
import { storedQ4Info } from '../quant/stored-q4.ts';
import { destroyLayer, loadWeights, type ModelWeights } from '../train/weights.ts';
import { KvForward } from './kv-forward.ts';
import { openOverlay, overlayCheckpoint, overlayExperts } from './overlay.ts';
import { checkSampleSettings, Sampler, type SampleSettings } from './sample.ts';

export { checkSampleSettings, Sampler, sampleDistribution, applyRepetitionPenalty, argmax, type SampleSettings } from './sample.ts';

export interface GenerateRequest extends SampleSettings {
  promptIds: number[];
  /** Generation stops after one of these ids (it is the last token returned). */
  eosIds: number[];
  /** Generation stops once the decoded new text contains one of these (needs `decode`). */
  stopStrings?: string[];
  decode?: (ids: number[]) => string;
  signal?: AbortSignal;
  /** Each new token as it is sampled. */
  onToken?: (id: number) => void;
}

export interface GenerateResult {
  /** The new tokens (the prompt not included). */
  tokens: number[];
  stop: 'eos' | 'stop-string' | 'length' | 'aborted';
  /** Prompt tokens per second of the prefill. */
  prefillTokS: number;
  /** New tokens per second after the prefill (0 when only one was made). */
  tokS: number;
}

export interface OpenGeneratorOptions {
  /** A run's v2 delta (usaf-delta.safetensors) to overlay: its trained entries over the model, nothing exported. */
  delta?: Bytes | null;
  /** KV cache length in positions (prompt + new tokens; generation stops when it is full): at most the model's max_position_embeddings (default 2048). */
  maxPositions?: number;
  /** Most prompt tokens per prefill step (default 128). */
  chunk?: number;
}

const DEFAULT_POSITIONS = 2048;
const DEFAULT_CHUNK = 128;

async function readJson(folder: FileSet, path: string): Promise<unknown | null> {
  const src = await folder.open(path);
  if (!src) return null;
  try {
    return JSON.parse(new TextDecoder().decode(await src.read(0, await src.size())));
  } catch (e) {
    throw new Error(`${folder.name}/${path}: ${(e as Error).message}`);
  } finally {
    await src.close?.();
  }
}

/** eos_token_id of generation_config.json, else of config.json (a number or a list), deduplicated. */
export async function readEosIds(folder: FileSet): Promise<number[]> {
  for (const f of ['generation_config.json', 'config.json']) {
    const v = ((await readJson(folder, f)) as { eos_token_id?: unknown } | null)?.eos_token_id;
    const ids = (Array.isArray(v) ? v : [v]).filter((x): x is number => Number.isInteger(x) && (x as number) >= 0);
    if (ids.length) return [...new Set(ids)];
  }
  return [];
}

export class Generator {
  private constructor(
    readonly gpu: GpuContext,
    readonly spec: ModelSpec,
    private readonly weights: ModelWeights,
    private readonly kv: KvForward,
    /** The model's end-of-sequence ids (generation_config.json, else config.json); may be empty. */
    readonly eosIds: number[],
  ) {}

  /** Loads the model in `folder` (Hub layout or a stored 4-bit model) onto the GPU, with `opts.delta` overlaid. */
  static async open(gpu: GpuContext, folder: FileSet, opts: OpenGeneratorOptions = {}): Promise<Generator> {
    const config = await readJson(folder, 'config.json');
    if (config === null) throw new Error(`${folder.name} has no config.json`);
    let spec = parseConfig(config);
    const raw = await openCheckpoint(folder);
    try {
      const stored = storedQ4Info(raw);
      const layout = stored ? stored.expertLayout : detectExpertLayout(raw.tensors.keys());
      if (layout !== spec.expertLayout) spec = withExpertLayout(spec, layout);
      const overlay = opts.delta ? await openOverlay(folder, opts.delta, stored) : null;
      const ckpt = overlay ? overlayCheckpoint(raw, spec, overlay) : raw;
      const q4 = !stored && overlay?.q4Group ? { groupSize: overlay.q4Group } : undefined;
      const weights = await loadWeights(gpu, spec, ckpt, { quantizeExperts: q4 });
      if (overlay) await overlayExperts(gpu, spec, weights, overlay);
      const positions = Math.min(opts.maxPositions ?? DEFAULT_POSITIONS, spec.maxPos);
      if (!(Number.isSafeInteger(positions) && positions >= 2)) throw new Error(`maxPositions must be a whole number >= 2, got ${opts.maxPositions}`);
      const kv = new KvForward(gpu, spec, weights, positions, Math.min(positions, opts.chunk ?? DEFAULT_CHUNK));
      return new Generator(gpu, spec, weights, kv, await readEosIds(folder));
    } finally {
      await raw.close();
    }
  }

  /** KV cache length: prompt + new tokens fit in it. */
  get maxPositions(): number {
    return this.kv.cacheLength;
  }

  /** Logits [T, V] of every prompt token, prefilled through the cache in steps (tests on small vocabularies). */
  async prefillLogits(ids: number[]): Promise<Float32Array> {
    const V = this.spec.vocab;
    const out = new Float32Array(ids.length * V);
    await this.prefill(ids, (logits, at, n) => out.set(logits, at * V), true);
    return out;
  }

  private async prefill(ids: number[], got: (logits: Float32Array, at: number, n: number) => void, all = false): Promise<void> {
    if (!ids.length) throw new Error('the prompt is empty: give at least one token');
    if (ids.length >= this.maxPositions) throw new Error(`the prompt has ${ids.length} tokens; the cache holds ${this.maxPositions} positions, prompt and new tokens together`);
    const bad = ids.find((x) => !(Number.isInteger(x) && x >= 0 && x < this.spec.vocab));
    if (bad !== undefined) throw new Error(`token id ${bad} is outside the vocabulary (0..${this.spec.vocab - 1})`);
    const C = this.kv.opts.maxTokens;
    for (let at = 0; at < ids.length; at += C) {
      const part = ids.slice(at, at + C);
      got(await this.kv.step(part, at, all), at, part.length);
    }
  }

  async generate(req: GenerateRequest): Promise<GenerateResult> {
    const why = checkSampleSettings(req);
    if (why) throw new Error(why);
    if (req.stopStrings?.length && !req.decode) throw new Error('stop strings need a decode function');
    const eos = new Set(req.eosIds);
    const stops = (req.stopStrings ?? []).filter((s) => s.length > 0);
    const sampler = new Sampler(req);
    const seen = [...req.promptIds];
    const tokens: number[] = [];
    const t0 = performance.now();
    let logits: Float32Array | null = null;
    await this.prefill(req.promptIds, (l) => (logits = l));
    const t1 = performance.now();
    let pos = req.promptIds.length;
    let stop: GenerateResult['stop'];
    for (;;) {
      if (req.signal?.aborted) { stop = 'aborted'; break; }
      const id = sampler.next(logits!, seen);
      tokens.push(id);
      seen.push(id);
      req.onToken?.(id);
      if (eos.has(id)) { stop = 'eos'; break; }
      if (stops.length && stops.some((s) => req.decode!(tokens).includes(s))) { stop = 'stop-string'; break; }
      if (tokens.length >= req.maxNewTokens || pos >= this.maxPositions) { stop = 'length'; break; }
      if (req.signal?.aborted) { stop = 'aborted'; break; }
      logits = await this.kv.step([id], pos++);
    }
    const t2 = performance.now();
    return {
      tokens, stop,
      prefillTokS: req.promptIds.length / Math.max(1e-6, (t1 - t0) / 1000),
      tokS: tokens.length > 1 ? (tokens.length - 1) / Math.max(1e-6, (t2 - t1) / 1000) : 0,
    };
  }

  /** Frees the weights and the cache. */
  destroy(): void {
    const w = this.weights;
    for (const b of new Set([w.embed?.buf, w.finalNorm.buf, w.lmHead.buf])) b?.destroy();
    for (const lw of w.layers) destroyLayer(lw);
    this.kv.destroy();
  }
}
