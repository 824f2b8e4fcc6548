// Run records in the private storage (src/worker/run-store.ts) over an in-memory OPFS: the listing newest first, each
// run's size = the bytes of its record, log and checkpoint, a rename kept, and a deleted run gone with its files.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { DEFAULTS } from '../../../src/presets/index.ts';
import type { RunSummary } from '../../../src/worker/protocol.ts';
import { deleteRunFolder, listRunRecords, readRunRecord, replaceRunLog, runFolder, runsBytes, writeRunRecord } from '../../../src/worker/run-store.ts';
import { asRoot, FakeDir } from '../store/fake-opfs.ts';

const run = (id: string, createdAt: number): RunSummary => ({
  id, name: id, modelId: 'm', trainDatasetId: 'd', heldoutDatasetId: null, settings: { ...DEFAULTS }, status: 'done',
  createdAt, updatedAt: createdAt, steps: 3, stepsDone: 3, checkpointStep: 3, lastLoss: 2.5, pplBefore: null, pplAfter: null, error: null,
});

async function fileBytes(id: string, name: string): Promise<number> {
  const dir = (await runFolder(id, false))!;
  return (await (await dir.getFileHandle(name)).getFile()).size;
}

describe('run records', () => {
  let opfs: FakeDir;
  beforeEach(() => {
    opfs = new FakeDir('');
    vi.stubGlobal('navigator', { storage: { getDirectory: async () => asRoot(opfs) } });
  });
  afterEach(() => vi.unstubAllGlobals());

  it('lists runs newest first with the size of each folder; rename kept; delete removes the folder', async () => {
    const rnd = (n: number) => Array.from({ length: n }, (_, i) => `{"step":${i},"loss":${Math.random()}}`);
    await writeRunRecord(run('run-a', 1));
    await writeRunRecord(run('run-b', 3));
    await writeRunRecord(run('run-c', 2));
    await replaceRunLog('run-a', rnd(17));
    await replaceRunLog('run-b', rnd(5));
    // a checkpoint file of its own size in run-b's folder
    const ckpt = await (await runFolder('run-b', false))!.getFileHandle('train-state.safetensors', { create: true });
    const w = await ckpt.createWritable();
    await w.write(new Uint8Array(12_345));
    await w.close();

    const listed = await listRunRecords();
    expect(listed.map((r) => r.id)).toEqual(['run-b', 'run-c', 'run-a']);
    const sizes = await runsBytes(listed);
    expect(sizes.map((s) => s.id)).toEqual(['run-b', 'run-c', 'run-a']);
    const expectB = (await fileBytes('run-b', 'run.json')) + (await fileBytes('run-b', 'log.jsonl')) + 12_345;
    expect(sizes[0]).toEqual({ id: 'run-b', name: 'run-b', bytes: expectB });
    expect(sizes[1]!.bytes).toBe(await fileBytes('run-c', 'run.json'));
    expect(sizes[2]!.bytes).toBe((await fileBytes('run-a', 'run.json')) + (await fileBytes('run-a', 'log.jsonl')));

    await writeRunRecord({ ...(await readRunRecord('run-c'))!, name: 'baseline' });
    expect((await listRunRecords()).find((r) => r.id === 'run-c')!.name).toBe('baseline');
    expect((await runsBytes(await listRunRecords())).find((r) => r.id === 'run-c')!.name).toBe('baseline');

    await deleteRunFolder('run-b');
    expect(await runFolder('run-b', false)).toBeNull();
    expect((await listRunRecords()).map((r) => r.id)).toEqual(['run-c', 'run-a']);
    await deleteRunFolder('run-b'); // already gone: nothing to do
    await expect(deleteRunFolder('../models')).rejects.toThrow(/invalid run id/);
  });
});
