// The store's records of models: what a stored model is (its manifest), where one comes from, and an import's progress.
// Plain structured-cloneable data: the worker's protocol (src/worker/protocol.ts) hands them to the page as they are.

import type { ArchName, ParamCounts } from '../engine/model/index.ts';

/** Shape facts of a model, read from its config.json, for display. */
export interface ModelFacts {
  layers: number;
  hidden: number;
  experts: number;
  topK: number;
  expertIntermediate: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  vocab: number;
  maxPos: number;
  sharedExperts: number;
  denseLayers: number;
  dtype: string | null;
}

export interface StoredFile {
  path: string;
  bytes: number;
}

/**
 * How a model is kept: 'q4' = the store (src/store): routed experts in 4 bits (HQQ), the rest bf16, manifest in
 * IndexedDB; 'hub-copy' = the Hub files copied as they were, by earlier versions of the app (still usable).
 */
export type ModelStorage = 'q4' | 'hub-copy';

export interface StoredModel {
  /** Stable id (folder name in storage). */
  id: string;
  /** Absent in records of earlier versions: 'hub-copy'. */
  storage?: ModelStorage;
  /** Group size of the 4-bit experts ('q4' storage), else null: runs on a 'q4' model always use 4-bit experts. */
  groupSize?: number | null;
  name: string;
  arch: ArchName;
  /** Registry display name, e.g. "Qwen3-MoE". */
  archDisplay: string;
  facts: ModelFacts;
  params: ParamCounts;
  /** Bytes on disk, all files. */
  bytes: number;
  files: StoredFile[];
  /** tokenizer.json + tokenizer_config.json are present. */
  hasTokenizer: boolean;
  /** Where it came from: "built-in demo", a URL, or a folder name. */
  source: string;
  builtin: boolean;
  importedAt: number;
  /** The raw config.json, as stored. */
  config: Record<string, unknown>;
}

/** A file chosen in the page (folder picker / drag and drop), with its path relative to the chosen folder. */
export interface PickedFile {
  path: string;
  file: Blob;
}

export type ModelSource =
  | { kind: 'demo' }
  | { kind: 'url'; url: string; name?: string }
  /** `handle`: the folder picked (directory picker), kept so that exports can read the original weights again. */
  | { kind: 'files'; name: string; files: PickedFile[]; handle?: FileSystemDirectoryHandle }
  /** A model stored by an earlier version ('hub-copy'), imported again into the 4-bit store (the copy is kept). */
  | { kind: 'stored'; id: string };

export interface ImportProgress {
  phase: 'checking' | 'importing' | 'verifying' | 'done';
  /** The source file (shard) being read, e.g. "model-00002-of-00004.safetensors"; empty until the first tensor is read. */
  file: string;
  /** Bytes stored (4-bit experts, bf16 rest), of bytesTotal. */
  bytesDone: number;
  bytesTotal: number;
  /** Bytes of the source read by this import so far. */
  bytesRead: number;
  /** Tensors whose bytes are fully stored. */
  tensorsDone: number;
  tensorsTotal: number;
  /** Seconds left at the current rate; null until there is a rate. */
  etaSeconds: number | null;
  /** Bytes that an earlier, interrupted import had already stored and that were kept. */
  bytesResumed: number;
}
