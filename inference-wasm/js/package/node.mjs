// @trainer/inference for Node's `import` (and Bun's): the CommonJS entry, re-exported, so that
// `import` and `require` in one process share one wasm instance (and one Model class). The
// wasm is read with fs and instantiated synchronously when node.cjs loads.
import cjs from './node.cjs';

export const { Model, errorReply, init, initSync, isInferenceError } = cjs;
export default init;
