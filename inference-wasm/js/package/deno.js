// @trainer/inference for Deno: the .wasm beside this module, imported as a WebAssembly.Module
// (a source phase import, so no --allow-read is needed) and instantiated synchronously.
import source wasmModule from './inference_bg.wasm';
import { initSync } from './inference.js';

initSync(wasmModule);

export * from './inference.js';
export { default } from './inference.js';
