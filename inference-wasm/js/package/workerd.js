// @trainer/inference for Cloudflare Workers and workerd: they compile no wasm from bytes at run
// time, so the .wasm is imported as a WebAssembly.Module (wrangler's CompiledWasm rule; a
// `wasm =` module in a workerd config) and instantiated synchronously, once per isolate.
import wasmModule from './inference_bg.wasm';
import { initSync } from './inference.js';

initSync(wasmModule);

export * from './inference.js';
export { default } from './inference.js';
