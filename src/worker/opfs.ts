// Contract: the worker's OPFS helpers live in the store (src/store/opfs.ts); re-exported for the run and dataset records.
export * from '../store/opfs.ts';
