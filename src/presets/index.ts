// Contract: public surface of the presets module — the settings schema and checks, the share-link codec and the
// built-in presets. Pure TypeScript, usable in the page, the worker and Node.
export * from './schema.ts';
export * from './codec.ts';
export * from './builtin.ts';
