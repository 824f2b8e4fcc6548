// Every setting of a fine-tuning run as one table: name (the method's, also the env var), CLI flag, share-link code,
// type, range, default and help text. SETTINGS are a preset's settings (the app's editor, share links, stored presets,
// `usaf train` flags and env vars); RUN_SETTINGS are per run and have no share-link code (eval windows, eval split, GPU
// memory, expert chunk, checkpoint cadence). One check (checkValue) for every input: a flag, an env var, a link, a file.
//
// Defaults follow the method's defaults. `null` means "auto" for the settings that allow it.

// ---------------------------------------------------------------------------------------------
// Types

export interface Settings {
  frac: number;
  steps: number;
  epochs: number;
  microbatch: number;
  accum: number;
  seq: number;
  lrPeak: number;
  wd: number;
  trainFrom: number | null;
  reselectEvery: number;
  evalEvery: number;
  nImportance: number;
  frozenCacheN: number | null;
  trainShared: boolean;
  quantizeExperts: boolean;
  quantGroupSize: number;
  streamFrozen: boolean;
  seed: number;
  keepAdamState: boolean;
  perEntryStep: boolean;
  accumulatedReselect: boolean;
  windowSampling: boolean;
  trainOnPrompt: boolean;
}

export type SettingKey = keyof Settings;

interface SpecBase<K extends SettingKey> {
  key: K;
  /** Two-letter code used in share links (never changes: links in the wild carry it). */
  code: string;
  /** The method's name for it, e.g. "LR_PEAK"; also the env var `usaf train` reads (unless `env` says otherwise). */
  label: string;
  /** `usaf train`'s flag when it is not the key in kebab case (flagName). */
  flag?: string;
  /** `usaf train`'s env var when it is not the label (envName). */
  env?: string;
  /** What it is in plain words, shown first; the label follows in brackets (plainName). */
  title: string;
  unit: string;
  description: string;
  group: 'schedule' | 'batch' | 'selection' | 'memory' | 'improvements';
}

export interface NumberSpec<K extends SettingKey = SettingKey> extends SpecBase<K> {
  kind: 'int' | 'number';
  default: number | null;
  min: number;
  max: number;
  /** The value must be > min (not ≥). */
  minExclusive?: boolean;
  /** The value must be < max (not ≤). */
  maxExclusive?: boolean;
  /** null ("auto") allowed; autoText says what auto means. */
  auto?: { text: string };
  /** Value with a special meaning, e.g. 0 = "never". */
  special?: { value: number; text: string };
}

export interface BoolSpec<K extends SettingKey = SettingKey> extends SpecBase<K> {
  kind: 'bool';
  default: boolean;
}

export interface ChoiceSpec<K extends SettingKey = SettingKey> extends SpecBase<K> {
  kind: 'choice';
  default: number;
  choices: readonly number[];
}

export type SettingSpec = NumberSpec | BoolSpec | ChoiceSpec;

// ---------------------------------------------------------------------------------------------
// The table

export const SETTINGS: readonly SettingSpec[] = [
  {
    key: 'frac', code: 'fr', label: 'FRAC', title: 'Trained share of expert weights', kind: 'number', default: 0.005,
    min: 0, minExclusive: true, max: 1, unit: 'fraction of expert weights', group: 'selection',
    description: 'Share of each selection tensor (a layer\'s gate+up weights of all experts; its down weights) that is trained: the entries with the largest gradient magnitude.',
  },
  {
    key: 'steps', code: 'st', label: 'STEPS', title: 'Training steps', kind: 'int', default: 180, min: 1, max: 1_000_000,
    unit: 'optimizer steps', group: 'schedule',
    description: 'Number of optimizer updates. Ignored when EPOCHS is above 0.',
  },
  {
    key: 'epochs', code: 'ep', label: 'EPOCHS', title: 'Passes over the data', kind: 'number', default: 0, min: 0, max: 1000,
    unit: 'passes over the data', group: 'schedule', special: { value: 0, text: 'off: use STEPS' },
    description: 'When above 0: STEPS = floor(EPOCHS × training tokens / (MICROBATCH × ACCUM × SEQ)).',
  },
  {
    key: 'microbatch', code: 'mb', label: 'MICROBATCH', title: 'Sequences per pass', kind: 'int', default: 2, min: 1, max: 1024,
    unit: 'sequences', group: 'batch',
    description: 'Sequences per forward/backward pass.',
  },
  {
    key: 'accum', code: 'ac', label: 'ACCUM', title: 'Passes per step (gradient accumulation)', kind: 'int', default: 1, min: 1, max: 1024,
    unit: 'microbatches per step', group: 'batch',
    description: 'Microbatches whose gradients are averaged before each update.',
  },
  {
    key: 'seq', code: 'sq', label: 'SEQ', title: 'Tokens per sequence', kind: 'int', default: 512, min: 2, max: 131_072,
    unit: 'tokens', group: 'batch',
    description: 'Tokens per sequence. At most the model\'s max_position_embeddings.',
  },
  {
    key: 'lrPeak', code: 'lr', label: 'LR_PEAK', title: 'Peak learning rate', kind: 'number', default: 2e-4,
    min: 0, minExclusive: true, max: 1, unit: 'per step', group: 'schedule',
    description: 'Learning rate after the warm-up (5 % of the steps); then cosine decay to a tenth of it.',
  },
  {
    key: 'wd', code: 'wd', label: 'WD', title: 'Weight decay', kind: 'number', default: 0.005, min: 0, max: 1,
    unit: 'L2 coefficient', group: 'schedule',
    description: 'L2 weight decay added to the gradient of the trained entries and routers.',
  },
  {
    key: 'trainFrom', code: 'tf', label: 'TRAIN_FROM', title: 'First trained layer', kind: 'int', default: null,
    min: 0, max: 1023, unit: 'layer index', group: 'selection',
    auto: { text: 'top 8 layers (for models of n ≤ 16 layers: layers floor(n/2)..n−1, the top half rounded up)' },
    description: 'Layers TRAIN_FROM..last (those with experts) are trained; the layers below stay frozen.',
  },
  {
    key: 'reselectEvery', code: 're', label: 'RESELECT_EVERY', title: 'Choose trained weights again every', kind: 'int', default: 50,
    min: 0, max: 1_000_000, unit: 'steps', group: 'selection', special: { value: 0, text: 'never' },
    description: 'Every this many steps the trained entries are chosen again from a fresh gradient.',
  },
  {
    key: 'evalEvery', code: 'ee', label: 'EVAL_EVERY', title: 'Measure perplexity every', kind: 'int', default: 15,
    min: 0, max: 1_000_000, unit: 'steps', group: 'schedule', special: { value: 0, text: 'only before and after' },
    description: 'Every this many steps the in-domain and held-out perplexities are measured.',
  },
  {
    key: 'nImportance', code: 'ni', label: 'N_IMPORTANCE', title: 'Batches to rank weights at the start', kind: 'int', default: 3,
    min: 1, max: 10_000, unit: 'microbatches', group: 'selection',
    description: 'Microbatches whose gradient magnitudes are summed to choose the first trained entries.',
  },
  {
    key: 'trainShared', code: 'sh', label: 'TRAIN_SHARED', title: 'Train shared experts', kind: 'bool',
    default: false, unit: 'on / off', group: 'selection',
    description: 'Also train the shared experts of DeepSeek-V3 / Qwen2-MoE as sparse selection tensors (FRAC of their gate+up and of their down weights). Ignored for families without shared experts.',
  },
  {
    key: 'frozenCacheN', code: 'fc', label: 'FROZEN_CACHE_N', title: 'Cached outputs of the frozen layers', kind: 'int', default: null,
    min: 0, max: 100_000_000, unit: 'sequences', group: 'memory', special: { value: 0, text: 'no cache' },
    auto: { text: 'as many training sequences as fit the memory plan' },
    description: 'Training sequences whose hidden state entering the first trained layer is computed once and kept, so the frozen layers are not run again each step.',
  },
  {
    key: 'quantizeExperts', code: 'qe', label: 'QUANTIZE_EXPERTS', title: 'Experts in 4 bits', kind: 'bool',
    default: false, unit: 'on / off', group: 'memory',
    description: 'Keep the routed expert weights of every layer in 4 bits on the GPU (quantized while loading); trained entries keep float32 masters over the dequantized 4-bit base (the export writes the trained layers\' experts from that base).',
  },
  {
    key: 'quantGroupSize', code: 'qg', label: 'QUANT_GROUP', flag: 'group-size', env: 'GROUP_SIZE', title: 'Weights per 4-bit scale', kind: 'choice',
    default: 128, choices: [128, 64], unit: 'weights per scale', group: 'memory',
    description: 'Consecutive input weights that share one scale and zero point (smaller: more accurate, larger).',
  },
  {
    key: 'streamFrozen', code: 'sf', label: 'STREAM_FROZEN', title: 'Keep frozen layers in storage', kind: 'bool',
    default: false, unit: 'on / off', group: 'memory',
    description: 'Keep the frozen layers off the GPU: before training, each frozen layer is read once from storage and every training sequence and evaluation window goes through it; their inputs of the first trained layer are kept in memory. Then only the trained layers are on the GPU.',
  },
  {
    key: 'seed', code: 'sd', label: 'SEED', title: 'Random seed', kind: 'int', default: 0, min: 0, max: 4_294_967_295,
    unit: 'integer', group: 'schedule',
    description: 'Seeds the microbatch order and every other random choice, so a run can be repeated.',
  },
  {
    key: 'keepAdamState', code: 'ka', label: 'KEEP_ADAM_STATE', title: 'Keep optimizer state when reselecting', kind: 'bool',
    default: false, unit: 'on / off', group: 'improvements',
    description: 'Improvement over the seed: entries kept across a reselection keep their Adam moments instead of restarting from zero.',
  },
  {
    key: 'perEntryStep', code: 'pe', label: 'PER_ENTRY_STEP', title: 'Per-weight optimizer step count', kind: 'bool',
    default: false, unit: 'on / off', group: 'improvements',
    description: 'Improvement over the seed: bias correction uses each entry\'s own update count rather than one shared count.',
  },
  {
    key: 'accumulatedReselect', code: 'ar', label: 'ACCUMULATED_RESELECT', title: 'Rank reselections over several batches',
    kind: 'bool', default: false, unit: 'on / off', group: 'improvements',
    description: 'Improvement over the seed: reselection ranks entries by |gradient| summed over N_IMPORTANCE microbatches, like the first selection, instead of one microbatch.',
  },
  {
    key: 'windowSampling', code: 'ws', label: 'WINDOW_SAMPLES', flag: 'window-samples', title: 'Train on consecutive windows', kind: 'bool',
    default: false, unit: 'on / off', group: 'batch',
    description: 'Text data: draw training sequences from the consecutive SEQ-token windows of the dataset (the ones evaluation scores), shuffled each epoch, instead of the seed\'s STEPS × MICROBATCH × ACCUM sequences at random positions. Pre-tokenized data (input_ids records) is always trained record by record.',
  },
  {
    key: 'trainOnPrompt', code: 'tp', label: 'TRAIN_ON_PROMPT', title: 'Score all tokens, not only the answers', kind: 'bool',
    default: false, unit: 'on / off', group: 'batch',
    description: 'Instruction data (chat messages, Alpaca, prompt/completion) and records with -100 labels: training also scores the prompts, the role headers and the chat template\'s own tokens, not only the answers. Evaluation still scores the answers only, so perplexities stay comparable.',
  },
];

/** Settings of one run, not of a preset (no share-link code). */
export interface RunSettings {
  evalWindows: number | null;
  evalSplit: number;
  gpuGib: number | null;
  expertChunk: number | null;
  checkpointEvery: number;
}

export type RunSettingKey = keyof RunSettings;

export interface RunSettingSpec extends Omit<NumberSpec, 'key' | 'code' | 'group'> {
  key: RunSettingKey;
}

export const RUN_SETTINGS: readonly RunSettingSpec[] = [
  {
    key: 'evalWindows', label: 'EVAL_WINDOWS', title: 'Evaluation windows per set', kind: 'int', default: null, min: 1, max: 100_000_000,
    unit: 'windows per set', auto: { text: 'all' },
    description: 'Cap on the SEQ-token windows scored per evaluation set (in-domain, held-out).',
  },
  {
    key: 'evalSplit', label: 'EVAL_SPLIT', title: 'Share held apart for in-domain evaluation', kind: 'number', default: 0, min: 0, max: 1, maxExclusive: true,
    unit: 'share of the documents', special: { value: 0, text: 'evaluate on the training set, as the seed' },
    description: 'Share of the documents held apart for in-domain evaluation.',
  },
  {
    key: 'gpuGib', label: 'GPU_GIB', title: 'Memory of the GPU', kind: 'number', default: null, min: 0, minExclusive: true, max: 1_000_000,
    unit: 'GiB', auto: { text: 'unknown: not checked' },
    description: 'GPU memory to fit in: a run whose memory plan exceeds it is refused (with settings that fit).',
  },
  {
    key: 'expertChunk', label: 'EXPERT_CHUNK', title: 'Experts per chunk', kind: 'int', default: null, min: 1, max: 1_000_000,
    unit: 'experts', auto: { text: 'all, or the largest chunk that fits GPU_GIB and the adapter' },
    description: '4-bit experts: experts per chunk of a trained layer\'s f32 scratch (same results).',
  },
  {
    key: 'checkpointEvery', label: 'CHECKPOINT_EVERY', title: 'Save a checkpoint every', kind: 'int', default: 50, min: 0, max: 1_000_000,
    unit: 'steps', special: { value: 0, text: 'only at the end' },
    description: 'Save a resumable checkpoint every this many steps (and at the end).',
  },
];

/** A setting of either table (what the checks and the CLI take). */
export type AnySettingSpec = SettingSpec | RunSettingSpec;

/** `usaf train`'s flag for a setting: its key in kebab case unless the table names another. */
export const flagName = (spec: AnySettingSpec): string => spec.flag ?? spec.key.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase());

/** How the app names a setting: plain words first, the method's name second, e.g. "Trained share of expert weights (FRAC)". */
export const plainName = (spec: AnySettingSpec): string => `${spec.title} (${spec.label})`;

/** The env var of a setting: its label unless the table names another. */
export const envName = (spec: AnySettingSpec): string => spec.env ?? spec.label;

export function defaultRunSettings(): RunSettings {
  const out: Record<string, unknown> = {};
  for (const s of RUN_SETTINGS) out[s.key] = s.default;
  return out as unknown as RunSettings;
}

export const SETTING_BY_KEY: ReadonlyMap<string, SettingSpec> = new Map(SETTINGS.map((s) => [s.key, s]));
export const SETTING_BY_CODE: ReadonlyMap<string, SettingSpec> = new Map(SETTINGS.map((s) => [s.code, s]));

export function defaultSettings(): Settings {
  const out: Record<string, unknown> = {};
  for (const s of SETTINGS) out[s.key] = s.default;
  return out as unknown as Settings;
}

export const DEFAULTS: Readonly<Settings> = Object.freeze(defaultSettings());

// ---------------------------------------------------------------------------------------------
// Checks

/** The allowed values of a setting, in words (for error messages and the editor). */
export function rangeText(spec: AnySettingSpec): string {
  if (spec.kind === 'bool') return 'on or off';
  if (spec.kind === 'choice') return `one of ${spec.choices.join(', ')}`;
  const what = spec.kind === 'int' ? 'a whole number' : 'a number';
  const auto = spec.auto ? ', or auto' : '';
  const hi = spec.maxExclusive ? `below ${spec.max}` : `at most ${spec.max}`;
  if (spec.minExclusive) return `${what} above ${spec.min} and ${hi}${auto}`;
  return spec.maxExclusive ? `${what} from ${spec.min} to ${hi}${auto}` : `${what} from ${spec.min} to ${spec.max}${auto}`;
}

/** null when `value` is allowed for `spec`; otherwise why not (without the setting's name). */
export function checkValue(spec: AnySettingSpec, value: unknown): string | null {
  const shown = describe(value);
  switch (spec.kind) {
    case 'bool':
      return typeof value === 'boolean' ? null : `expected on or off (true/false), got ${shown}`;
    case 'choice':
      return typeof value === 'number' && spec.choices.includes(value) ? null : `expected ${rangeText(spec)}, got ${shown}`;
    default: {
      if (value === null) return spec.auto ? null : `expected ${rangeText(spec)}, got auto`;
      if (typeof value !== 'number' || !Number.isFinite(value)) return `expected ${rangeText(spec)}, got ${shown}`;
      if (spec.kind === 'int' && !Number.isInteger(value)) return `expected a whole number, got ${shown}`;
      const low = spec.minExclusive ? value <= spec.min : value < spec.min;
      if (low || (spec.maxExclusive ? value >= spec.max : value > spec.max)) return `${shown} is out of range: expected ${rangeText(spec)}`;
      return null;
    }
  }
}

function describe(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}…` : v);
  if (typeof v === 'number' || typeof v === 'boolean' || v === null || v === undefined) return String(v);
  return Array.isArray(v) ? 'a list' : `a ${typeof v}`;
}

export type Validated = { ok: true; settings: Settings } | { ok: false; errors: string[] };

/**
 * Strict check of untrusted settings (a stored or uploaded preset): a plain object whose own keys are all known settings,
 * each value of the right type and range. Missing keys take their defaults. Never returns the input object itself.
 */
export function validateSettings(input: unknown): Validated {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) {
    return { ok: false, errors: [`expected an object of settings, got ${describe(input)}`] };
  }
  const errors: string[] = [];
  const unknown = Reflect.ownKeys(input).filter((k) => typeof k !== 'string' || !SETTING_BY_KEY.has(k));
  if (unknown.length) errors.push(`unknown setting${unknown.length > 1 ? 's' : ''}: ${unknown.map((k) => JSON.stringify(String(k))).join(', ')}`);
  const out = defaultSettings() as unknown as Record<string, unknown>;
  for (const spec of SETTINGS) {
    const desc = Object.getOwnPropertyDescriptor(input, spec.key);
    if (!desc) continue;
    if (!('value' in desc)) {
      errors.push(`${spec.label}: must be a plain value`);
      continue;
    }
    const why = checkValue(spec, desc.value);
    if (why) errors.push(`${spec.label}: ${why}`);
    else out[spec.key] = desc.value;
  }
  return errors.length ? { ok: false, errors } : { ok: true, settings: out as unknown as Settings };
}

/** Keys whose value differs from the default. */
export function changedKeys(settings: Settings): SettingKey[] {
  return SETTINGS.filter((s) => settings[s.key] !== s.default).map((s) => s.key);
}

// ---------------------------------------------------------------------------------------------
// Resolution against a model and a dataset

/**
 * TRAIN_FROM with "auto" resolved: the top 8 layers; for models of n ≤ 16 layers, layers floor(n/2)..n−1 (the top half,
 * rounded up: a 1-layer model trains its layer, a 5-layer one its top 3). The CLI and the app resolve it here only.
 */
export function resolveTrainFrom(settings: Pick<Settings, 'trainFrom'>, numLayers: number): number {
  if (settings.trainFrom !== null) return settings.trainFrom;
  return numLayers <= 16 ? Math.floor(numLayers / 2) : numLayers - 8;
}

/** STEPS with EPOCHS resolved against the number of training tokens. */
export function resolveSteps(settings: Settings, trainTokens: number): number {
  if (settings.epochs <= 0) return settings.steps;
  const perStep = settings.microbatch * settings.accum * settings.seq;
  return Math.max(1, Math.floor((settings.epochs * trainTokens) / perStep));
}

/** Problems of these settings for a model with `numLayers` layers and `maxPos` positions (empty = fine). */
export function checkAgainstModel(settings: Settings, model: { numLayers: number; maxPos: number }): Partial<Record<SettingKey, string>> {
  const out: Partial<Record<SettingKey, string>> = {};
  if (settings.trainFrom !== null && settings.trainFrom >= model.numLayers) {
    out.trainFrom = `this model has ${model.numLayers} layers (0–${model.numLayers - 1})`;
  }
  if (settings.seq > model.maxPos) out.seq = `this model handles at most ${model.maxPos} positions`;
  return out;
}
