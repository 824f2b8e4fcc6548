// Training checkpoint file: encode/decode round trip of every field; truncated, corrupt, inconsistent or foreign
// files refused with a clear TrainCheckpointError; saving is atomic (a failed save keeps the previous checkpoint whole).

import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { memorySource } from '../../../src/engine/io/byte-source.ts';
import { encodeSafetensors } from '../../../src/engine/io/safetensors-write.ts';
import { memorySink, type FileSink } from '../../../src/engine/io/sink.ts';
import {
  decodeTrainCheckpoint, encodeTrainCheckpoint, loadTrainCheckpoint, saveTrainCheckpoint, stateCrc, TRAIN_CHECKPOINT_FILE,
  TrainCheckpointError, type LayerState, type TrainCheckpoint,
} from '../../../src/engine/train/checkpoint-file.ts';
import { nodeFileSink } from '../../../src/node/file-sink.ts';
import { nodeFolder } from '../../../src/node/folder.ts';
import { randint, randn } from '../../helpers/random.ts';
import { tempFolder } from '../../helpers/train-io.ts';
import { concat } from '../io/helpers.ts';

/** A layer with awkward sizes: nG active gate|up entries, nD down entries, E x H router. */
function layerState(layer: number, nG: number, nD: number, tG: number, tD: number, seed: number, withBuf: boolean): LayerState {
  const E = 6, H = 80;
  return {
    layer,
    idxG: randint(nG, 2 * 48 * 80 * 6, seed), idxD: randint(nD, 48 * 80 * 6, seed + 1),
    masterG: randn(nG, seed + 2), mG: randn(nG, seed + 3, 1e-3), vG: randn(nG, seed + 4, 1e-6).map(Math.abs),
    masterD: randn(nD, seed + 5), mD: randn(nD, seed + 6, 1e-3), vD: randn(nD, seed + 7, 1e-6).map(Math.abs),
    touchedG: randint(tG, 2 * 48 * 80 * 6, seed + 8), touchedValG: randn(tG, seed + 9),
    touchedD: randint(tD, 48 * 80 * 6, seed + 10), touchedValD: randn(tD, seed + 11),
    router: randn(E * H, seed + 12), routerBuf: withBuf ? randn(E * H, seed + 13) : null,
  };
}

function sample(): TrainCheckpoint {
  const l6 = layerState(6, 231, 117, 503, 250, 10, true);
  l6.extra = { routerM: randn(480, 40), counts: randint(7, 1000, 41) };
  return {
    version: 1,
    settings: { FRAC: 0.005, LR: 2e-4, TRAIN_FROM: 4, name: 'run ü', nested: { a: [1, 2] } },
    step: 37,
    rng: { seed: 1234, state: [0x9e3779b9, 7, 0, 4294967295] },
    dataOrder: { epoch: 1, cursor: 5, order: randint(13, 13, 3) },
    frozenCacheId: 'demo:L4:abc123',
    skipped: 2,
    turnovers: [0.92, 0.88, 0.9],
    adamT: 37,
    layers: [l6, layerState(7, 0, 0, 0, 0, 20, false)],
    log: [{ step: 1, loss: 2.5, lr: 1e-5 }, { step: 2, loss: 2.4, note: 'x' }],
    extra: { emaLoss: Float32Array.of(2.25) },
  };
}

async function decodeBytes(bytes: Uint8Array, name = 'ckpt'): Promise<TrainCheckpoint> {
  return decodeTrainCheckpoint(memorySource(bytes, name));
}

async function refusal(p: Promise<unknown>): Promise<string> {
  const e = await p.then(() => null, (err: unknown) => err);
  expect(e).toBeInstanceOf(TrainCheckpointError);
  return (e as Error).message;
}

describe('training checkpoint file', () => {
  it('round trip: every field and array comes back exactly', async () => {
    const c = sample();
    const back = await decodeBytes(concat(encodeTrainCheckpoint(c)));
    expect(back).toEqual(c);
    expect(back.layers[0].idxG).toBeInstanceOf(Uint32Array);
    expect(back.layers[0].masterG).toBeInstanceOf(Float32Array);
    expect(back.layers[1].routerBuf).toBeNull();
    expect(back.layers[0].extra!.counts).toBeInstanceOf(Uint32Array);
    // u32 values above 2^31 survive the I32 storage
    const big = sample();
    big.layers[0].idxG[0] = 0xfffffff0;
    expect((await decodeBytes(concat(encodeTrainCheckpoint(big)))).layers[0].idxG[0]).toBe(0xfffffff0);
  });

  it('a truncated file is refused with a clear error, wherever it was cut', async () => {
    const bytes = concat(encodeTrainCheckpoint(sample()));
    for (const keep of [0, 5, 8, 200, bytes.length - 4000, bytes.length - 1]) {
      expect(await refusal(decodeBytes(bytes.subarray(0, keep), 'train-state.safetensors')))
        .toMatch(/^training checkpoint train-state\.safetensors: not a readable safetensors file \(truncated or corrupt\?\)/);
    }
  });

  it('a corrupt data byte is caught by the CRC', async () => {
    const bytes = concat(encodeTrainCheckpoint(sample()));
    bytes[bytes.length - 1000] ^= 0x04;
    expect(await refusal(decodeBytes(bytes))).toMatch(/tensor "[^"]+" does not match its CRC \(corrupt file\)/);
  });

  it('refuses to save inconsistent state', async () => {
    const short = sample();
    short.layers[0].vG = short.layers[0].vG.subarray(1);
    expect(() => encodeTrainCheckpoint(short)).toThrow(/layers\[0\] \(layer 6\): idxG has 231, masterG has 231, mG has 231, vG has 230 entries/);
    const buf = sample();
    buf.layers[0].routerBuf = new Float32Array(3);
    expect(() => encodeTrainCheckpoint(buf)).toThrow('routerBuf has 3 entries, router 480');
    const twice = sample();
    twice.layers[1].layer = 6;
    expect(() => encodeTrainCheckpoint(twice)).toThrow('layer 6 appears twice');
    const wrongType = sample();
    (wrongType.layers[0] as unknown as Record<string, unknown>).idxD = new Float32Array(117);
    expect(() => encodeTrainCheckpoint(wrongType)).toThrow('layers[0].idxD is not a Uint32Array');
    const cursor = sample();
    cursor.dataOrder.cursor = 14;
    expect(() => encodeTrainCheckpoint(cursor)).toThrow('dataOrder.cursor 14 is past the end');
  });

  it('refuses other versions, other formats and inconsistent files', async () => {
    const v2 = sample();
    v2.version = 2;
    expect(() => encodeTrainCheckpoint(v2)).toThrow('version 2 is not supported');
    const plain = concat(encodeSafetensors([{ name: 'w', dtype: 'F32', shape: [1], data: new Uint8Array(4) }], { format: 'pt' }));
    expect(await refusal(decodeBytes(plain))).toMatch(/metadata format is "pt", not "usaf-train-checkpoint"/);

    // a writer that got the lengths wrong (re-encoded with consistent CRCs): found on load
    const c = sample();
    const chunks = encodeTrainCheckpoint(c);
    const header = JSON.parse(new TextDecoder().decode(chunks[0].subarray(8)).trimEnd());
    const state = JSON.parse(header.__metadata__.state);
    state.version = 3;
    const tensors = await decodeToTensorData(concat(chunks));
    const text = JSON.stringify(state);
    const rebuilt = concat(encodeSafetensors(tensors, { ...header.__metadata__, state: text, state_crc: stateCrc(text) }));
    expect(await refusal(decodeBytes(rebuilt))).toMatch(/version 3 is not supported/);
    const dropped = concat(encodeSafetensors(tensors.filter((t) => t.name !== 'layer.0.mG'), header.__metadata__));
    expect(await refusal(decodeBytes(dropped))).toMatch(/tensor "layer.0.mG" is missing/);
    const extra = concat(encodeSafetensors([...tensors, { name: 'stray', dtype: 'F32', shape: [1], data: new Uint8Array(4) }], header.__metadata__));
    expect(await refusal(decodeBytes(extra))).toMatch(/tensor "stray" is not part of the format/);
  });

  it('the header is covered by its checksum: an edited "step" is refused; a checkpoint from before state_crc loads', async () => {
    const bytes = concat(encodeTrainCheckpoint(sample()));
    const text = new TextDecoder().decode(bytes);
    // same length, so the safetensors offsets stay valid: only the checksum can catch it
    const at = text.indexOf('\\"step\\":37');
    expect(at).toBeGreaterThan(0);
    const edited = bytes.slice();
    edited.set(new TextEncoder().encode('\\"step\\":99'), at);
    expect(await refusal(decodeBytes(edited))).toMatch(/metadata "state" does not match its CRC \(state_crc\): the header was edited or is corrupt/);

    const chunks = encodeTrainCheckpoint(sample());
    const header = JSON.parse(new TextDecoder().decode(chunks[0].subarray(8)).trimEnd());
    const tensors = await decodeToTensorData(concat(chunks));
    const { state_crc: _, ...old } = header.__metadata__ as Record<string, string>;
    expect(await decodeBytes(concat(encodeSafetensors(tensors, old)))).toEqual(sample());
  });

  it('save through a memory sink, load through its folder', async () => {
    const sink = memorySink();
    const n = await saveTrainCheckpoint(sink, 'runs/r1', sample());
    expect([...sink.files.keys()]).toEqual([`runs/r1/${TRAIN_CHECKPOINT_FILE}`]);
    expect(n).toBe(sink.totalBytes());
    expect(await loadTrainCheckpoint(sink.folder(), 'runs/r1')).toEqual(sample());
    expect(await refusal(loadTrainCheckpoint(sink.folder(), 'runs/r2'))).toMatch(/runs\/r2\/train-state\.safetensors: there is none/);
  });

  it('Node: a save that fails mid-way keeps the previous checkpoint whole and leaves no temporary file', async () => {
    const t = await tempFolder('ckpt');
    try {
      const sink = nodeFileSink(t.dir);
      const first = sample();
      await saveTrainCheckpoint(sink, 'run', first);
      const before = await readFile(join(t.dir, 'run', TRAIN_CHECKPOINT_FILE));

      // a sink whose stream dies after the first megabyte-ish, as a disk-full or a crash would
      const dying: FileSink = {
        name: 'dying',
        write: (path, chunks) => sink.write(path, (async function* () {
          let n = 0;
          for await (const c of chunks) {
            if ((n += c.byteLength) > 6000) throw new Error('disk full');
            yield c;
          }
        })()),
      };
      const second = sample();
      second.step = 38;
      await expect(saveTrainCheckpoint(dying, 'run', second)).rejects.toThrow('disk full');
      expect(await readdir(join(t.dir, 'run'))).toEqual([TRAIN_CHECKPOINT_FILE]);
      expect((await readFile(join(t.dir, 'run', TRAIN_CHECKPOINT_FILE))).equals(before)).toBe(true);
      expect((await loadTrainCheckpoint(nodeFolder(t.dir), 'run')).step).toBe(37);

      await saveTrainCheckpoint(sink, 'run', second);
      expect((await loadTrainCheckpoint(nodeFolder(join(t.dir, 'run')))).step).toBe(38);

      // a file cut short on disk (not through the sink) is refused on load
      const bytes = await readFile(join(t.dir, 'run', TRAIN_CHECKPOINT_FILE));
      await writeFile(join(t.dir, 'run', TRAIN_CHECKPOINT_FILE), bytes.subarray(0, bytes.length - 10));
      expect(await refusal(loadTrainCheckpoint(nodeFolder(t.dir), 'run'))).toMatch(/run\/train-state\.safetensors: not a readable safetensors file/);
    } finally {
      await t.remove();
    }
  });
});

/** The tensors of a safetensors file in file order, with their bytes (to rebuild a file with other metadata). */
async function decodeToTensorData(bytes: Uint8Array): Promise<Array<{ name: string; dtype: 'F32' | 'I32'; shape: number[]; data: Uint8Array<ArrayBuffer> }>> {
  const { openSafetensors } = await import('../../../src/engine/io/safetensors.ts');
  const f = await openSafetensors(memorySource(bytes, 'x'));
  const ts = [...f.tensors.values()].sort((a, b) => a.begin - b.begin);
  return Promise.all(ts.map(async (t) => ({ name: t.name, dtype: t.dtype as 'F32' | 'I32', shape: t.shape, data: await f.readTensor(t.name) })));
}
