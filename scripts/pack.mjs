// Assemble the npm package @trainer/inference from wasm-bindgen's output (see scripts/pack.sh).
// Usage: node scripts/pack.mjs BINDGEN_DIR PKG_DIR VERSION
//
// One wasm, one ES module glue, an entry per host:
//   inference.js       browsers, bundlers, web workers, the default: wasm-bindgen's --target web
//                      glue plus the package API (`init()` fetches inference_bg.wasm from
//                      `new URL('./inference_bg.wasm', import.meta.url)`)
//   node.cjs           Node require(): wasm-bindgen's --target nodejs glue (reads the .wasm with fs,
//                      synchronously) plus the same API
//   node.mjs           Node import (and Bun): re-exports node.cjs, so import and require share one
//                      wasm instance
//   deno.js            Deno: reads the .wasm beside it and initialises synchronously
//   workerd.js         Cloudflare Workers / workerd: imports the .wasm as a WebAssembly.Module
//                      (those hosts compile no wasm from bytes at run time)
//   index.d.ts/.d.cts  the API's types; README.md; package.json
// The hand-written files live in inference-wasm/js/package/; the glue is only appended to.
import { copyFileSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const [bindgen, pkg, version] = process.argv.slice(2);
if (!bindgen || !pkg || !/^\d+\.\d+\.\d+/.test(version ?? '')) {
  console.error('usage: node scripts/pack.mjs BINDGEN_DIR PKG_DIR VERSION');
  process.exit(2);
}
const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const SOURCES = join(ROOT, 'inference-wasm/js/package');
const NAME = '@trainer/inference';

const fail = (msg) => {
  throw new Error(`pack: ${msg}`);
};

// Both glues must drive the same module: the package ships one .wasm.
const wasm = readFileSync(join(bindgen, 'web/inference_bg.wasm'));
if (!wasm.equals(readFileSync(join(bindgen, 'nodejs/inference_bg.wasm')))) {
  fail('wasm-bindgen wrote different .wasm files for --target web and --target nodejs');
}

const SELF_TYPES = /^\/\* @ts-self-types="\.\/inference\.d\.ts" \*\/\n/;
const isInferenceError = `/**
 * Whether \`e\` is an error the inference core threw: an \`Error\` with \`kind\`, \`row\`, \`column\`
 * and \`status\` (see InferenceError in index.d.ts).
 */
function isInferenceError(e) {
  return e instanceof Error && typeof e.kind === 'string' && typeof e.status === 'number';
}`;

// ---- inference.js: the ES module glue + the package API.
let esm = readFileSync(join(bindgen, 'web/inference.js'), 'utf8').replace(SELF_TYPES, '');
const ESM_EXPORTS = 'export { initSync, __wbg_init as default };\n';
if (!esm.endsWith(ESM_EXPORTS)) fail(`the --target web glue no longer ends with ${JSON.stringify(ESM_EXPORTS)}`);
if (!esm.includes("new URL('inference_bg.wasm', import.meta.url)")) fail('the --target web glue no longer loads inference_bg.wasm by URL');
if (!/^let wasmModule, wasmInstance, wasm;$/m.test(esm)) fail('the --target web glue no longer keeps its instance in `let wasm`');
esm = `${esm.slice(0, -ESM_EXPORTS.length)}
// ---- The package API (added by scripts/pack.mjs), the same in every entry of ${NAME}.

/**
 * Load the wasm, once; later calls return at once. \`input\`: the .wasm as a URL or URL string,
 * a Response (or a promise of one), bytes, or a WebAssembly.Module. Default: inference_bg.wasm
 * beside this module, a URL that bundlers following \`new URL(…, import.meta.url)\` emit as an asset.
 */
async function init(input) {
  if (wasm !== undefined) return; // (hosts such as workerd give modules no URL to resolve against)
  await __wbg_init({ module_or_path: input ?? new URL('./inference_bg.wasm', import.meta.url) });
}

/** Load the wasm synchronously from its bytes or a WebAssembly.Module (nothing once loaded). */
function initSyncFrom(input) {
  initSync({ module: input });
}

${isInferenceError}

export { init, initSyncFrom as initSync, isInferenceError, init as default };
`;

// ---- node.cjs: the CommonJS glue (it loads ./inference_bg.wasm with fs on require) + the API.
let cjs = readFileSync(join(bindgen, 'nodejs/inference.js'), 'utf8').replace(SELF_TYPES, '');
if (!cjs.includes('require(\'fs\').readFileSync(wasmPath)') || !/^const wasmPath = `\$\{__dirname\}\/inference_bg\.wasm`;$/m.test(cjs)) {
  fail('the --target nodejs glue no longer reads inference_bg.wasm beside itself');
}
for (const name of ['Model', 'errorReply']) {
  if (!cjs.includes(`exports.${name} = ${name};`)) fail(`the --target nodejs glue does not export ${name}`);
}
cjs = `${cjs}
// ---- The package API (added by scripts/pack.mjs), the same in every entry of ${NAME}. The
// wasm was loaded above, synchronously: init and initSync have nothing left to do.

/** Resolves at once: under Node the wasm is loaded when this module is. */
async function init(_input) {}

/** Nothing to do: under Node the wasm is loaded when this module is. */
function initSync(_input) {}

${isInferenceError}

exports.init = init;
exports.initSync = initSync;
exports.isInferenceError = isInferenceError;
exports.default = init;
`;

// ---- Write the package.
rmSync(pkg, { recursive: true, force: true });
mkdirSync(pkg, { recursive: true });
writeFileSync(join(pkg, 'inference.js'), esm);
writeFileSync(join(pkg, 'node.cjs'), cjs);
writeFileSync(join(pkg, 'inference_bg.wasm'), wasm);
for (const f of readdirSync(SOURCES)) copyFileSync(join(SOURCES, f), join(pkg, f));
// The CommonJS entry's types: the same declarations, read as a CommonJS module.
copyFileSync(join(pkg, 'index.d.ts'), join(pkg, 'index.d.cts'));

const crate = readFileSync(join(ROOT, 'Cargo.toml'), 'utf8').match(/^license = "([^"]+)"/m)?.[1];
const entries = ['inference.js', 'node.cjs', 'node.mjs', 'deno.js', 'workerd.js'];
const manifest = {
  name: NAME,
  version,
  description: 'The trainer\'s inference core as wasm: load a model.safetensors bundle and predict with the HTTP API\'s numbers, in browsers, Node, Deno, Bun and Workers.',
  license: crate,
  type: 'module',
  // Resolution order matters: hosts take the first condition they know.
  exports: {
    '.': {
      types: { require: './index.d.cts', default: './index.d.ts' },
      workerd: './workerd.js',
      deno: './deno.js',
      node: { import: './node.mjs', require: './node.cjs' },
      browser: './inference.js',
      worker: './inference.js',
      default: './inference.js',
    },
    './inference_bg.wasm': './inference_bg.wasm',
    './package.json': './package.json',
  },
  // For tools that predate `exports`.
  main: './node.cjs',
  module: './inference.js',
  browser: './inference.js',
  types: './index.d.ts',
  files: [...entries, 'inference_bg.wasm', 'index.d.ts', 'index.d.cts', 'README.md'],
  // The host entries instantiate the wasm when they load: a bundler must keep them even when an
  // import only names Model (with `false`, esbuild drops workerd.js's initSync and the .wasm import).
  // The glue itself is free of side effects.
  sideEffects: ['./node.cjs', './node.mjs', './deno.js', './workerd.js'],
  engines: { node: '>=18' },
  keywords: ['wasm', 'inference', 'tabular', 'mlp', 'safetensors', 'cloudflare-workers', 'deno', 'bun'],
};
for (const f of manifest.files) readFileSync(join(pkg, f)); // every listed file exists
writeFileSync(join(pkg, 'package.json'), `${JSON.stringify(manifest, null, 2)}\n`);
