// Contract: public surface of the model-spec module: config.json → ModelSpec, tensor names/shapes, parameter
// counts and the supported-architecture registry. Engine code: no DOM, no Node APIs.
export type * from './spec.ts';
export { parseConfig, withExpertLayout, type ParseOptions } from './config.ts';
export { ConfigError, UnsupportedModelError } from './config-read.ts';
export { countParams, expertParamCount, type ParamCounts } from './params.ts';
export { allTensors, detectExpertLayout, globalTensors, layerTensors } from './tensors.ts';
export { ARCHITECTURES, SUPPORTED_MODEL_TYPES, archInfo, isSupportedArch, type ArchInfo, type ArchStatus } from './registry.ts';
