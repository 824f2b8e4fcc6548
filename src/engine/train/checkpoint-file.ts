// The training checkpoint (resume state) as ONE safetensors file: typed arrays as 1-D tensors, everything else as JSON
// in __metadata__.state, each tensor's CRC-32 beside it. Saved atomically through a FileSink; loading validates it all.
//
// Tensors: `dataOrder.order` (I32 holding u32 bits), `layer.<k>.<field>` for the k-th entry of `layers` (u32 fields
// idxG/idxD/touchedG/touchedD as I32 bits, the rest F32; routerBuf only when not null), `extra.<key>` and
// `layer.<k>.extra.<key>` for the optional extra arrays (trained shared experts: `shared.<G|D>.<idx|master|m|v|touched|
// touchedVal>`, see shared-train.ts; settings.trainShared says they are there; per-entry Adam step counts `stepsG`/`stepsD`
// and `shared.<G|D>.steps` with settings.perEntryStep). rng.state = [data order] or, with settings.accumulatedReselect,
// [data order, importance stream]. Metadata: format 'usaf-train-checkpoint', version '1', state, state_crc (CRC-32, hex,
// of the state JSON's UTF-8 bytes: the header is checked as the tensors are). Checkpoints written before state_crc existed
// still load (their header unchecked); a state_crc that does not match is refused.

import type { ByteSource, Bytes } from '../io/byte-source.ts';
import type { FileSet } from '../io/folder.ts';
import { openSafetensors, type SafetensorsFile } from '../io/safetensors.ts';
import { encodeSafetensors, type TensorData } from '../io/safetensors-write.ts';
import { joinPath, type FileSink } from '../io/sink.ts';
import { bytesOf, crc32, hex32 } from './delta.ts';

export const TRAIN_CHECKPOINT_FILE = 'train-state.safetensors';
export const TRAIN_CHECKPOINT_FORMAT = 'usaf-train-checkpoint';
export const TRAIN_CHECKPOINT_VERSION = 1;

/** Extra arrays the trainer may add without a format change (u32 or f32, 1-D). */
export type ExtraArrays = Record<string, Float32Array | Uint32Array>;

/** One trained layer's optimizer state. G: the gate|up experts' active set, D: the down experts'. */
export interface LayerState {
  layer: number;
  idxG: Uint32Array; // [nG] flat indices of the active entries
  idxD: Uint32Array; // [nD]
  masterG: Float32Array; // [nG] f32 master values
  mG: Float32Array; // [nG] Adam first moment
  vG: Float32Array; // [nG] Adam second moment
  masterD: Float32Array; // [nD]
  mD: Float32Array; // [nD]
  vD: Float32Array; // [nD]
  touchedG: Uint32Array; // [tG] every entry ever trained
  touchedValG: Float32Array; // [tG] its current value
  touchedD: Uint32Array; // [tD]
  touchedValD: Float32Array; // [tD]
  router: Float32Array; // [E * H] the router's current weights
  routerBuf: Float32Array | null; // [E * H] or null
  extra?: ExtraArrays;
}

export interface TrainCheckpoint {
  version: number;
  settings: Record<string, unknown>;
  step: number;
  rng: { seed: number; state: number[] };
  dataOrder: { epoch: number; cursor: number; order: Uint32Array };
  frozenCacheId: string;
  skipped: number;
  turnovers: number[];
  adamT: number;
  layers: LayerState[];
  log: object[];
  extra?: ExtraArrays;
}

/** CRC-32 (hex) of the state JSON text as stored (metadata `state_crc`). */
export const stateCrc = (stateJson: string): string => hex32(crc32(new TextEncoder().encode(stateJson)));

export class TrainCheckpointError extends Error {
  constructor(file: string, detail: string) {
    super(`training checkpoint ${file}: ${detail}`);
    this.name = 'TrainCheckpointError';
  }
}

// ---------------------------------------------------------------------------------------------
// Layout shared by encode and decode

type Kind = 'u32' | 'f32';
const U32_FIELDS = ['idxG', 'idxD', 'touchedG', 'touchedD'] as const;
const F32_FIELDS = ['masterG', 'mG', 'vG', 'masterD', 'mD', 'vD', 'touchedValG', 'touchedValD', 'router'] as const;
/** Fields that must have the same length, per group. */
const SAME_LENGTH: ReadonlyArray<readonly (keyof LayerState)[]> = [
  ['idxG', 'masterG', 'mG', 'vG'], ['idxD', 'masterD', 'mD', 'vD'], ['touchedG', 'touchedValG'], ['touchedD', 'touchedValD'],
];

/** What goes into __metadata__.state: everything but the arrays, plus how to find and check them. */
interface StateJson {
  version: number;
  settings: Record<string, unknown>;
  step: number;
  rng: { seed: number; state: number[] };
  dataOrder: { epoch: number; cursor: number };
  frozenCacheId: string;
  skipped: number;
  turnovers: number[];
  adamT: number;
  log: object[];
  layers: { layer: number; routerBuf: boolean; extra: Record<string, Kind> }[];
  extra: Record<string, Kind>;
  /** CRC-32 (hex) of each tensor's bytes. */
  crc: Record<string, string>;
}

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const isInt = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 0;
const isNum = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);

const kindOf = (a: unknown): Kind | null => (a instanceof Uint32Array ? 'u32' : a instanceof Float32Array ? 'f32' : null);

/** Throws (via `fail`) unless the non-array fields and the array lengths of `c` are consistent. */
function validate(c: TrainCheckpoint, fail: (detail: string) => never): void {
  if (c.version !== TRAIN_CHECKPOINT_VERSION) {
    fail(`version ${JSON.stringify(c.version)} is not supported (this build reads ${TRAIN_CHECKPOINT_VERSION})`);
  }
  if (!isObj(c.settings)) fail('settings is not an object');
  if (!isInt(c.step)) fail(`step ${JSON.stringify(c.step)} is not a non-negative integer`);
  if (!isObj(c.rng) || !isNum(c.rng.seed) || !Array.isArray(c.rng.state) || !c.rng.state.every(isNum)) fail('rng is not {seed, state: number[]}');
  if (!isObj(c.dataOrder) || !isInt(c.dataOrder.epoch) || !isInt(c.dataOrder.cursor) || !(c.dataOrder.order instanceof Uint32Array)) {
    fail('dataOrder is not {epoch, cursor, order: Uint32Array}');
  }
  if (c.dataOrder.cursor > c.dataOrder.order.length) {
    fail(`dataOrder.cursor ${c.dataOrder.cursor} is past the end of dataOrder.order (${c.dataOrder.order.length})`);
  }
  if (typeof c.frozenCacheId !== 'string') fail('frozenCacheId is not a string');
  if (!isNum(c.skipped)) fail('skipped is not a number');
  if (!Array.isArray(c.turnovers) || !c.turnovers.every((x) => typeof x === 'number')) fail('turnovers is not a number[]');
  if (!isNum(c.adamT)) fail('adamT is not a number');
  if (!Array.isArray(c.log) || !c.log.every(isObj)) fail('log is not an array of objects');
  if (!Array.isArray(c.layers)) fail('layers is not an array');
  const seen = new Set<number>();
  c.layers.forEach((l, k) => {
    const at = `layers[${k}]`;
    if (!isObj(l) || !isInt(l.layer)) fail(`${at}.layer is not a non-negative integer`);
    if (seen.has(l.layer)) fail(`layer ${l.layer} appears twice in layers`);
    seen.add(l.layer);
    for (const f of U32_FIELDS) if (!(l[f] instanceof Uint32Array)) fail(`${at}.${f} is not a Uint32Array`);
    for (const f of F32_FIELDS) if (!(l[f] instanceof Float32Array)) fail(`${at}.${f} is not a Float32Array`);
    if (l.routerBuf !== null && !(l.routerBuf instanceof Float32Array)) fail(`${at}.routerBuf is neither null nor a Float32Array`);
    for (const group of SAME_LENGTH) {
      const lens = group.map((f) => (l[f] as Uint32Array | Float32Array).length);
      if (lens.some((n) => n !== lens[0])) {
        fail(`${at} (layer ${l.layer}): ${group.map((f, i) => `${f} has ${lens[i]}`).join(', ')} entries; they must be equal`);
      }
    }
    if (l.routerBuf && l.routerBuf.length !== l.router.length) {
      fail(`${at} (layer ${l.layer}): routerBuf has ${l.routerBuf.length} entries, router ${l.router.length}`);
    }
    for (const [key, a] of Object.entries(l.extra ?? {})) if (!kindOf(a)) fail(`${at}.extra.${key} is not a Uint32Array or Float32Array`);
  });
  for (const [key, a] of Object.entries(c.extra ?? {})) if (!kindOf(a)) fail(`extra.${key} is not a Uint32Array or Float32Array`);
}

// ---------------------------------------------------------------------------------------------
// Encoding

/** The checkpoint as safetensors chunks (header, then views of the arrays themselves: do not modify them until written). */
export function encodeTrainCheckpoint(c: TrainCheckpoint): Bytes[] {
  validate(c, (detail) => { throw new TrainCheckpointError('(being saved)', detail); });
  const tensors: TensorData[] = [];
  const crc: Record<string, string> = {};
  const add = (name: string, a: Float32Array | Uint32Array): void => {
    const data = bytesOf(a);
    crc[name] = hex32(crc32(data));
    tensors.push({ name, dtype: a instanceof Float32Array ? 'F32' : 'I32', shape: [a.length], data });
  };
  const addExtra = (prefix: string, extra: ExtraArrays | undefined): Record<string, Kind> => {
    const kinds: Record<string, Kind> = {};
    for (const [key, a] of Object.entries(extra ?? {})) { add(`${prefix}extra.${key}`, a); kinds[key] = kindOf(a)!; }
    return kinds;
  };

  add('dataOrder.order', c.dataOrder.order);
  const layers = c.layers.map((l, k) => {
    for (const f of [...U32_FIELDS, ...F32_FIELDS]) add(`layer.${k}.${f}`, l[f]);
    if (l.routerBuf) add(`layer.${k}.routerBuf`, l.routerBuf);
    return { layer: l.layer, routerBuf: l.routerBuf !== null, extra: addExtra(`layer.${k}.`, l.extra) };
  });
  const extra = addExtra('', c.extra);
  const state: StateJson = {
    version: c.version, settings: c.settings, step: c.step, rng: { seed: c.rng.seed, state: [...c.rng.state] },
    dataOrder: { epoch: c.dataOrder.epoch, cursor: c.dataOrder.cursor }, frozenCacheId: c.frozenCacheId,
    skipped: c.skipped, turnovers: c.turnovers, adamT: c.adamT, log: c.log, layers, extra, crc,
  };
  const text = JSON.stringify(state);
  return encodeSafetensors(tensors, {
    format: TRAIN_CHECKPOINT_FORMAT, version: String(TRAIN_CHECKPOINT_VERSION), state: text, state_crc: stateCrc(text),
  });
}

/**
 * Saves `c` as `<dir>/train-state.safetensors`. The sink's write is atomic (temporary file, then rename; OPFS swap
 * file): the previous checkpoint stays in place, whole, until the new one is complete. Returns the bytes written.
 */
export async function saveTrainCheckpoint(sink: FileSink, dir: string, c: TrainCheckpoint): Promise<number> {
  const chunks = encodeTrainCheckpoint(c);
  await sink.write(joinPath(dir, TRAIN_CHECKPOINT_FILE), chunks);
  await sink.commit?.();
  return chunks.reduce((n, b) => n + b.byteLength, 0);
}

// ---------------------------------------------------------------------------------------------
// Decoding

/** Reads and fully validates a training checkpoint file. */
export async function decodeTrainCheckpoint(source: ByteSource): Promise<TrainCheckpoint> {
  const name = source.name;
  const fail = (detail: string): never => { throw new TrainCheckpointError(name, detail); };
  let file: SafetensorsFile;
  try {
    file = await openSafetensors(source);
  } catch (e) {
    return fail(`not a readable safetensors file (truncated or corrupt?): ${(e as Error).message}`);
  }
  const meta = file.metadata;
  if (meta.format !== TRAIN_CHECKPOINT_FORMAT) fail(`metadata format is ${JSON.stringify(meta.format ?? null)}, not "${TRAIN_CHECKPOINT_FORMAT}"`);
  if (meta.version !== String(TRAIN_CHECKPOINT_VERSION)) {
    fail(`version ${JSON.stringify(meta.version ?? null)} is not supported (this build reads ${TRAIN_CHECKPOINT_VERSION})`);
  }
  if (meta.state_crc !== undefined && (typeof meta.state !== 'string' || meta.state_crc !== stateCrc(meta.state))) {
    fail('metadata "state" does not match its CRC (state_crc): the header was edited or is corrupt');
  }
  let state: StateJson;
  try {
    state = JSON.parse(meta.state ?? '') as StateJson;
  } catch (e) {
    return fail(`metadata "state" is missing or not valid JSON: ${(e as Error).message}`);
  }
  if (!isObj(state) || !isObj(state.crc) || !Array.isArray(state.layers) || !isObj(state.dataOrder)) {
    fail('metadata "state" lacks crc, layers or dataOrder');
  }

  const expected = new Set<string>();
  const read = async (tname: string, kind: Kind): Promise<Float32Array | Uint32Array> => {
    expected.add(tname);
    const t = file.tensors.get(tname);
    if (!t) return fail(`tensor "${tname}" is missing`);
    if (t.dtype !== (kind === 'f32' ? 'F32' : 'I32') || t.shape.length !== 1) {
      fail(`tensor "${tname}" is ${t.dtype} [${t.shape.join(', ')}], expected a 1-D ${kind === 'f32' ? 'F32' : 'I32'} tensor`);
    }
    let bytes: Bytes;
    try {
      bytes = await file.readTensor(tname);
    } catch (e) {
      return fail(`reading tensor "${tname}" failed (truncated file?): ${(e as Error).message}`);
    }
    if (state.crc[tname] !== hex32(crc32(bytes))) fail(`tensor "${tname}" does not match its CRC (corrupt file)`);
    const buf = bytes.byteOffset % 4 === 0 ? bytes : bytes.slice();
    return kind === 'f32' ? new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4)
      : new Uint32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4);
  };
  const f32 = async (n: string): Promise<Float32Array> => (await read(n, 'f32')) as Float32Array;
  const u32 = async (n: string): Promise<Uint32Array> => (await read(n, 'u32')) as Uint32Array;
  const readExtra = async (prefix: string, kinds: unknown): Promise<ExtraArrays | undefined> => {
    if (kinds === undefined) return undefined;
    if (!isObj(kinds)) return fail(`metadata "state": ${prefix}extra is not an object`);
    const out: ExtraArrays = {};
    for (const [key, kind] of Object.entries(kinds)) {
      if (kind !== 'u32' && kind !== 'f32') fail(`metadata "state": ${prefix}extra.${key} has kind ${JSON.stringify(kind)}`);
      out[key] = await read(`${prefix}extra.${key}`, kind as Kind);
    }
    return Object.keys(out).length > 0 ? out : undefined;
  };

  const layers: LayerState[] = [];
  for (let k = 0; k < state.layers.length; k++) {
    const l = state.layers[k];
    if (!isObj(l)) fail(`metadata "state": layers[${k}] is not an object`);
    const p = `layer.${k}.`;
    const layer: LayerState = {
      layer: l.layer,
      idxG: await u32(`${p}idxG`), idxD: await u32(`${p}idxD`),
      masterG: await f32(`${p}masterG`), mG: await f32(`${p}mG`), vG: await f32(`${p}vG`),
      masterD: await f32(`${p}masterD`), mD: await f32(`${p}mD`), vD: await f32(`${p}vD`),
      touchedG: await u32(`${p}touchedG`), touchedValG: await f32(`${p}touchedValG`),
      touchedD: await u32(`${p}touchedD`), touchedValD: await f32(`${p}touchedValD`),
      router: await f32(`${p}router`), routerBuf: l.routerBuf === true ? await f32(`${p}routerBuf`) : null,
    };
    const extra = await readExtra(p, l.extra);
    if (extra) layer.extra = extra;
    layers.push(layer);
  }
  const c: TrainCheckpoint = {
    version: state.version, settings: state.settings, step: state.step, rng: state.rng,
    dataOrder: { epoch: state.dataOrder.epoch, cursor: state.dataOrder.cursor, order: await u32('dataOrder.order') },
    frozenCacheId: state.frozenCacheId, skipped: state.skipped, turnovers: state.turnovers, adamT: state.adamT,
    layers, log: state.log,
  };
  const extra = await readExtra('', state.extra);
  if (extra) c.extra = extra;
  for (const tname of file.tensors.keys()) if (!expected.has(tname)) fail(`tensor "${tname}" is not part of the format`);
  validate(c, fail);
  return c;
}

/** Loads `<dir>/train-state.safetensors` from `folder`; throws TrainCheckpointError when absent, truncated or corrupt. */
export async function loadTrainCheckpoint(folder: FileSet, dir = ''): Promise<TrainCheckpoint> {
  const path = joinPath(dir, TRAIN_CHECKPOINT_FILE);
  const source = await folder.open(path);
  if (!source) throw new TrainCheckpointError(path, `there is none in ${folder.name}`);
  try {
    return await decodeTrainCheckpoint(source);
  } finally {
    await source.close?.();
  }
}
