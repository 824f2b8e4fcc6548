// Contract: public surface of the model-spec module: config.json → ModelSpec, tensor names/shapes, parameter
// counts and the supported-architecture registry. Engine code: no DOM, no Node APIs.
export type * from './spec.ts';
export { parseConfig, withExpertLayout, type ParseOptions } from './config.ts';
export { ConfigError, UnsupportedModelError } from './config-read.ts';
export { countParams, expertParamCount, type ParamCounts } from './params.ts';
export { allTensors, detectExpertLayout, globalTensors, layerTensors } from './tensors.ts';
export { ARCHITECTURES, SUPPORTED_MODEL_TYPES, archInfo, familyAdapter, isSupportedArch, type ArchInfo, type ArchStatus } from './registry.ts';
export { FAMILIES, type FamilyArch } from './families/index.ts';
export type { FamilyAdapter, ArchDefaults } from './families/adapter.ts';
