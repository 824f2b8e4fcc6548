// Contract: the settings of a fine-tuning run as the app sees them. The table itself (every setting's name, env name,
// CLI flag, share-link code, type, range, default and help text) and its checks live in the engine
// (src/engine/train/settings-table.ts), where `usaf train` reads the same table.
export * from '../engine/train/settings-table.ts';
