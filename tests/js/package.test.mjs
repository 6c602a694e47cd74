// The npm package @trainer/inference, installed from its tarball (inference-wasm/trainer-inference-
// VERSION.tgz, as scripts/pack.sh leaves it) into a scratch project, running one program in every
// host: Node `import`, Node `require`, Deno, Bun, a page bundled with esbuild in headless Chromium,
// a worker bundled for workerd (the `workerd` condition, as wrangler resolves it), and `tsc` on a
// typed example. Each host's answers are bit-identical to the others', and equal `trainer predict
// --json` on the same rows (see NATIVE_ULPS in helpers.mjs).
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { createRequire } from 'node:module';
import { extname, join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import { chromium } from 'playwright-core';

import {
  NATIVE_ULPS,
  ROOT,
  assertNativeJson,
  csvLine,
  freePort,
  installPackage,
  nativePredictCsv,
  packageTarball,
  readCsv,
  startProcess,
  tempDir,
  train,
  waitForHttp,
} from './helpers.mjs';

const CHROMIUM = process.env.CHROMIUM_BIN ?? '/usr/bin/chromium';
const BIN = join(ROOT, 'node_modules/.bin');
const ROWS = 12; // test rows per model
const API = ['Model', 'errorReply', 'init', 'initSync', 'isInferenceError'];

/**
 * The program every host runs: `api` is the package as that host imports it, `cases` the models
 * and rows (cases.json). Its result is plain JSON, compared across hosts and with the native CLI.
 */
async function program(api, cases) {
  await api.init();
  const decode = (bytes) => new TextDecoder().decode(bytes);
  const caught = (f) => {
    try {
      f();
      return null;
    } catch (e) {
      return { isInferenceError: api.isInferenceError(e), isError: e instanceof Error, kind: e.kind, status: e.status, row: e.row, column: e.column, message: e.message };
    }
  };
  const out = {
    exports: Object.keys(api).filter((k) => k !== 'default' && k !== 'module.exports' && api[k] !== undefined).sort(),
    defaultIsInit: api.default === api.init,
    bundleError: caught(() => api.Model.fromBundle(new Uint8Array([1, 2, 3]))),
    errorReply: (({ status, contentType, body }) => ({ status, contentType, body: decode(body) }))(api.errorReply('oip_v2', 404, 'model_not_found', 'no such model')),
    models: [],
  };
  for (const c of cases) {
    const bytes = Uint8Array.from(atob(c.bundle), (ch) => ch.charCodeAt(0));
    const model = api.Model.fromBundle(bytes, { verifyHash: true });
    const rows = c.rows.map((r) => r.map((v) => (v === '' ? null : v)));
    const reply = model.handle('kserve_v1', new TextEncoder().encode(JSON.stringify({ instances: rows.slice(0, 3) })), 'application/json');
    out.models.push({
      name: c.name,
      modelId: model.modelId,
      taskType: model.taskType,
      featureNames: model.featureNames,
      predict: rows.map((r) => model.predict(r)),
      records: model.predictRecords(c.records),
      csv: model.predictCsv(c.csv),
      request: model.predictRequest({ data: { features: rows } }),
      handle: { status: reply.status, contentType: reply.contentType, body: JSON.parse(decode(reply.body)) },
      explain: model.explain(rows[0], { seed: 7 }),
      wrongCount: caught(() => model.predict(rows[0].slice(1))),
      badValue: caught(() => model.predictRecords([c.records[0], Object.fromEntries(model.featureNames.map((n) => [n, 'not a value']))])),
    });
    model.free();
  }
  return out;
}

/** The same program as a file for one host: `head` imports the package as `api` and reads `cases`. */
const hostFile = (head, tail) => `${head}\n${program.toString()}\n${tail}\n`;

/**
 * Bundled hosts import by name, as apps (and web/edge/worker.js) do, so that the bundler's tree
 * shaking is in play: an entry that loads the wasm must survive an import of `Model` alone.
 */
const NAMED_IMPORT = "import { Model, errorReply, init, initSync, isInferenceError } from '@trainer/inference';\nconst api = { Model, errorReply, init, initSync, isInferenceError, default: init };";

/** Static files of `root` on 127.0.0.1 (for the bundled page). */
function serveStatic(root) {
  const types = { '.html': 'text/html', '.js': 'text/javascript', '.json': 'application/json', '.wasm': 'application/wasm' };
  const server = createServer((req, res) => {
    const name = new URL(req.url, 'http://x').pathname.slice(1) || 'index.html';
    const file = join(root, name);
    if (name.includes('..') || !existsSync(file)) return res.writeHead(404).end();
    res.writeHead(200, { 'content-type': types[extname(file)] ?? 'application/octet-stream' }).end(readFileSync(file));
  });
  return new Promise((ok) => server.listen(0, '127.0.0.1', () => ok(server)));
}

function run(cmd, args, opts = {}) {
  return execFileSync(cmd, args, { encoding: 'utf8', maxBuffer: 64 << 20, stdio: ['ignore', 'pipe', 'pipe'], ...opts });
}

/** The last stdout line of a host's run, parsed. */
const lastJson = (stdout) => JSON.parse(stdout.trim().split('\n').at(-1));

describe('@trainer/inference from its tarball in every host', () => {
  let tmp;
  let project; // the scratch project
  let installed; // node_modules/@trainer/inference
  let cases;
  let native; // name -> trainer predict --json of the rows
  let reference; // the Node ESM result, which every other host must equal
  const results = {}; // host -> pass/fail, for the summary diagnostic

  before(() => {
    tmp = tempDir('package-test');
    const modelsDir = join(tmp.dir, 'models');
    // A classifier with categories and missing cells (the embedded ESG data) and a regressor.
    const fits = {
      esg: train(modelsDir, ['--epochs', '3', '--save-test-rows']),
      diabetes: train(modelsDir, ['--data', 'tests/fixtures/diabetes.csv', '--target', 'progression', '--task', 'regression', '--epochs', '3', '--save-test-rows']),
    };
    cases = [];
    native = {};
    for (const [name, s] of Object.entries(fits)) {
      const { header, rows } = readCsv(join(s.model_dir, 'test_rows.csv'));
      const names = JSON.parse(readFileSync(join(s.model_dir, 'metadata.json'), 'utf8')).preprocessing.feature_names;
      const some = rows.slice(0, ROWS);
      const csv = [header, ...some].map(csvLine).join('\n');
      const csvPath = join(tmp.dir, `${name}.csv`);
      writeFileSync(csvPath, `${csv}\n`);
      native[name] = nativePredictCsv(modelsDir, s.model_id, csvPath);
      cases.push({
        name,
        bundle: readFileSync(join(s.model_dir, 'model.safetensors')).toString('base64'),
        rows: some.map((r) => names.map((n) => r[header.indexOf(n)])), // raw text cells, as the CLI reads them
        records: some.map((r) => Object.fromEntries(header.map((h, j) => [h, r[j]]))),
        csv,
      });
    }
    project = join(tmp.dir, 'project');
    mkdirSync(project);
    installed = installPackage(project);
    writeFileSync(join(project, 'cases.json'), JSON.stringify(cases));
  });

  after(() => {
    tmp?.cleanup();
  });

  /** Everything a host answered, checked: the API's shape, the native CLI's numbers, the errors. */
  function check(r, host, stats = { exact: 0, close: 0 }) {
    assert.deepEqual(r.exports, API, `${host}: exports`);
    assert.equal(r.defaultIsInit, true, `${host}: default export`);
    assert.equal(r.bundleError.kind, 'not_safetensors');
    assert.equal(r.bundleError.status, 500);
    assert.equal(r.bundleError.isInferenceError, true);
    assert.deepEqual(r.errorReply, { status: 404, contentType: 'application/json', body: '{"error":"no such model"}' });
    for (const m of r.models) {
      const want = native[m.name];
      assert.equal(want.length, ROWS);
      for (const [what, got] of [['predict', m.predict], ['records', m.records], ['csv', m.csv], ['request', m.request.predictions], ['handle', m.handle.body.predictions]]) {
        assertNativeJson(assert, got, what === 'handle' ? want.slice(0, 3) : want, `${host} ${m.name} ${what}`, stats);
      }
      const e = m.explain;
      const sum = e.base_value + Object.values(e.values).reduce((a, b) => a + b, 0);
      assert.ok(Math.abs(sum - e.output) <= 1e-5 * Math.max(1, Math.abs(e.output)), `${host} ${m.name}: base + Σφ = ${sum}, output ${e.output}`);
      assert.deepEqual(Object.keys(e.values), m.featureNames);
      assert.deepEqual({ ...m.wrongCount, message: undefined }, { isInferenceError: true, isError: true, kind: 'wrong_feature_count', status: 400, row: null, column: null, message: undefined });
      assert.equal(m.badValue.row, 1, `${host}: the bad record's row`);
      assert.equal(m.badValue.column, m.featureNames[0]);
      assert.equal(m.badValue.status, 400);
    }
    assert.equal(r.models.find((m) => m.name === 'esg').taskType, 'classification');
    assert.equal(r.models.find((m) => m.name === 'diabetes').taskType, 'regression');
    if (reference) assert.deepEqual(r, reference, `${host}: the same answers, bit for bit, as Node import`);
    return stats;
  }

  const host = (name, fn) =>
    test(name, async (t) => {
      try {
        await fn(t);
        results[name] = 'pass';
      } catch (e) {
        results[name] = 'FAIL';
        throw e;
      }
    });

  test('the tarball: name, version, exports, files', (t) => {
    const pkg = JSON.parse(readFileSync(join(installed, 'package.json'), 'utf8'));
    const crate = readFileSync(join(ROOT, 'inference-wasm/Cargo.toml'), 'utf8').match(/^version = "([^"]+)"/m)[1];
    assert.equal(pkg.name, '@trainer/inference');
    assert.equal(pkg.version, crate);
    assert.equal(pkg.type, 'module');
    // Only the entries that instantiate the wasm have side effects (see scripts/pack.mjs).
    assert.deepEqual(pkg.sideEffects, ['./node.cjs', './node.mjs', './deno.js', './workerd.js']);
    const root = pkg.exports['.'];
    assert.deepEqual(Object.keys(root), ['types', 'workerd', 'deno', 'node', 'browser', 'worker', 'default']);
    assert.deepEqual(root.node, { import: './node.mjs', require: './node.cjs' });
    const targets = [root.types.require, root.types.default, root.workerd, root.deno, root.node.import, root.node.require, root.browser, root.worker, root.default];
    for (const f of targets) assert.ok(existsSync(join(installed, f)), f);
    // What was installed is exactly `files` (plus package.json), and nothing is missing.
    assert.deepEqual(readdirSync(installed).sort(), [...pkg.files, 'package.json'].sort());
    const tarball = statSync(packageTarball()).size;
    const unpacked = readdirSync(installed).reduce((n, f) => n + statSync(join(installed, f)).size, 0);
    const wasm = statSync(join(installed, 'inference_bg.wasm')).size;
    t.diagnostic(`tarball ${tarball} bytes; unpacked ${unpacked} bytes in ${readdirSync(installed).length} files (inference_bg.wasm ${wasm})`);
  });

  host('Node import (ESM)', (t) => {
    writeFileSync(
      join(project, 'esm.mjs'),
      hostFile(
        "import * as api from '@trainer/inference';\nimport { readFileSync } from 'node:fs';\nimport { createRequire } from 'node:module';\nconst cases = JSON.parse(readFileSync(new URL('./cases.json', import.meta.url), 'utf8'));",
        "const out = await program(api, cases);\nout.oneInstance = createRequire(import.meta.url)('@trainer/inference').Model === api.Model;\nconsole.log(JSON.stringify(out));",
      ),
    );
    const r = lastJson(run(process.execPath, ['esm.mjs'], { cwd: project }));
    assert.equal(r.oneInstance, true, 'import and require share one wasm instance');
    delete r.oneInstance;
    const { exact, close } = check(r, 'node-esm');
    t.diagnostic(`vs trainer predict --json: ${exact} numbers equal, ${close} within ${NATIVE_ULPS} f32 ulps`);
    reference = r;
  });

  host('Node require (CommonJS)', () => {
    writeFileSync(
      join(project, 'cjs.cjs'),
      hostFile("const api = require('@trainer/inference');\nconst cases = require('./cases.json');", 'program(api, cases).then((out) => console.log(JSON.stringify(out)));'),
    );
    check(lastJson(run(process.execPath, ['cjs.cjs'], { cwd: project })), 'node-cjs');
  });

  host('Deno (--allow-read=cases.json, nothing else)', () => {
    writeFileSync(
      join(project, 'deno.mjs'),
      hostFile("import * as api from '@trainer/inference';\nconst cases = JSON.parse(Deno.readTextFileSync('cases.json'));", 'console.log(JSON.stringify(await program(api, cases)));'),
    );
    const env = { ...process.env, DENO_DIR: join(tmp.dir, 'deno-cache'), DENO_NO_UPDATE_CHECK: '1', NO_COLOR: '1' };
    check(lastJson(run(join(BIN, 'deno'), ['run', '--no-prompt', '--allow-read=cases.json', 'deno.mjs'], { cwd: project, env })), 'deno');
  });

  host('Bun', () => {
    writeFileSync(
      join(project, 'bun.mjs'),
      hostFile("import * as api from '@trainer/inference';\nconst cases = await Bun.file('cases.json').json();", 'console.log(JSON.stringify(await program(api, cases)));'),
    );
    const env = { ...process.env, BUN_INSTALL_CACHE_DIR: join(tmp.dir, 'bun-cache'), NO_COLOR: '1' };
    check(lastJson(run(join(BIN, 'bun'), ['run', 'bun.mjs'], { cwd: project, env })), 'bun');
  });

  host('a page bundled with esbuild, in headless Chromium', async () => {
    assert.ok(existsSync(CHROMIUM), `no Chromium at ${CHROMIUM}: apt-get install chromium (or set CHROMIUM_BIN)`);
    writeFileSync(
      join(project, 'page.mjs'),
      hostFile(
        NAMED_IMPORT,
        "program(api, await (await fetch('./cases.json')).json()).then((out) => { window.__result = JSON.stringify(out); }, (e) => { window.__error = String(e?.stack ?? e); });",
      ),
    );
    const dist = join(project, 'dist');
    run(join(BIN, 'esbuild'), ['page.mjs', '--bundle', '--format=esm', '--platform=browser', '--target=es2022', '--log-level=warning', `--outfile=${join(dist, 'app.js')}`], { cwd: project });
    const bundle = readFileSync(join(dist, 'app.js'), 'utf8');
    assert.ok(!bundle.includes('readFileSync') && !bundle.includes('node:'), 'the browser entry, not the Node one');
    // esbuild leaves `new URL('./inference_bg.wasm', import.meta.url)` alone: the .wasm goes beside the bundle.
    const wasm = createRequire(join(project, 'page.mjs')).resolve('@trainer/inference/inference_bg.wasm');
    copyFileSync(wasm, join(dist, 'inference_bg.wasm'));
    copyFileSync(join(project, 'cases.json'), join(dist, 'cases.json'));
    writeFileSync(join(dist, 'index.html'), '<!doctype html><meta charset="utf-8"><title>package</title><script type="module" src="./app.js"></script>\n');
    const server = await serveStatic(dist);
    const browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    try {
      const page = await browser.newPage();
      const errors = [];
      page.on('pageerror', (e) => errors.push(String(e)));
      await page.goto(`http://127.0.0.1:${server.address().port}/`);
      await page.waitForFunction(() => window.__result || window.__error, null, { timeout: 20000 });
      const error = await page.evaluate(() => window.__error);
      assert.equal(error, undefined, error);
      assert.deepEqual(errors, []);
      check(JSON.parse(await page.evaluate(() => window.__result)), 'chromium');
    } finally {
      await browser.close();
      await new Promise((ok) => server.close(ok));
    }
  });

  host('workerd (bundled with the workerd condition, as wrangler does)', async () => {
    const dir = join(project, 'worker');
    mkdirSync(dir);
    writeFileSync(
      join(project, 'worker.mjs'),
      hostFile(
        `${NAMED_IMPORT}\nimport cases from './cases.json';`,
        'export default { async fetch() { return new Response(JSON.stringify(await program(api, cases)), { headers: { "content-type": "application/json" } }); } };',
      ),
    );
    // The .wasm stays a module of its own (wrangler's CompiledWasm rule): workerd compiles no wasm from bytes.
    run(join(BIN, 'esbuild'), ['worker.mjs', '--bundle', '--format=esm', '--platform=neutral', '--conditions=workerd,worker,browser', '--external:*.wasm', '--log-level=warning', `--outfile=${join(dir, 'worker.js')}`], { cwd: project });
    const bundle = readFileSync(join(dir, 'worker.js'), 'utf8');
    assert.match(bundle, /from "\.\/inference_bg\.wasm"/, 'the workerd entry imports its .wasm as a module');
    copyFileSync(join(installed, 'inference_bg.wasm'), join(dir, 'inference_bg.wasm'));
    const port = await freePort();
    writeFileSync(
      join(dir, 'config.capnp'),
      `using Workerd = import "/workerd/workerd.capnp";
const config :Workerd.Config = (
  services = [ (name = "main", worker = .w) ],
  sockets = [ (name = "http", address = "127.0.0.1:${port}", http = (), service = "main") ],
);
const w :Workerd.Worker = (
  modules = [ (name = "worker.js", esModule = embed "worker.js"), (name = "inference_bg.wasm", wasm = embed "inference_bg.wasm") ],
  compatibilityDate = "2024-11-01",
);
`,
    );
    const workerd = await startProcess(join(BIN, 'workerd'), ['serve', 'config.capnp'], { cwd: dir });
    try {
      await waitForHttp(`http://127.0.0.1:${port}/`);
      const r = await fetch(`http://127.0.0.1:${port}/`);
      const text = await r.text();
      assert.equal(r.status, 200, `${text}\n${workerd.output()}`);
      check(JSON.parse(text), 'workerd');
    } finally {
      await workerd.stop();
    }
  });

  host('tsc --noEmit on a typed example (ESM and CommonJS, nodenext and bundler resolution)', () => {
    writeFileSync(join(project, 'example.ts'), TYPED_EXAMPLE);
    writeFileSync(join(project, 'example.cts'), TYPED_CJS);
    const options = { strict: true, noEmit: true, target: 'es2022', lib: ['es2022'], types: [], skipLibCheck: false };
    writeFileSync(join(project, 'tsconfig.json'), JSON.stringify({ compilerOptions: { ...options, module: 'nodenext', moduleResolution: 'nodenext' }, files: ['example.ts', 'example.cts'] }));
    writeFileSync(join(project, 'tsconfig.bundler.json'), JSON.stringify({ compilerOptions: { ...options, module: 'esnext', moduleResolution: 'bundler' }, files: ['example.ts'] }));
    for (const config of ['tsconfig.json', 'tsconfig.bundler.json']) {
      try {
        run(join(BIN, 'tsc'), ['-p', config], { cwd: project });
      } catch (e) {
        assert.fail(`tsc -p ${config}:\n${e.stdout}${e.stderr}`);
      }
    }
    // And the declarations are not `any`: a wrong use is an error.
    writeFileSync(join(project, 'wrong.ts'), "import { Model } from '@trainer/inference';\ndeclare const m: Model;\nconst n: string = m.numFeatures;\nm.predictRequest({}, 'grpc');\n");
    let out = '';
    try {
      run(join(BIN, 'tsc'), ['--ignoreConfig', '--noEmit', '--strict', '--module', 'nodenext', '--moduleResolution', 'nodenext', '--lib', 'es2022', 'wrong.ts'], { cwd: project });
    } catch (e) {
      out = `${e.stdout}`;
    }
    assert.match(out, /wrong\.ts\(3,7\): error TS2322/);
    assert.match(out, /wrong\.ts\(4,\d+\): error TS2769/);
  });

  test('summary', (t) => {
    t.diagnostic(Object.entries(results).map(([h, r]) => `${h}: ${r}`).join('; '));
  });
});

/** A typed program over the declarations: every call, the options objects, narrowing. */
const TYPED_EXAMPLE = `import init, { Model, errorReply, isInferenceError } from '@trainer/inference';
import type { ApiMlResponse, ClassPrediction, ExplainOptions, Explanation, InferenceError, Prediction, Protocol, Reply, SingleExplanation } from '@trainer/inference';

declare const bytes: Uint8Array;
declare function show(...values: unknown[]): void;

await init();
const model: Model = Model.fromBundle(bytes, { verifyHash: false });
const names: string[] = model.featureNames;
const task: 'classification' | 'regression' = model.taskType;
const p: Prediction = model.predict(names.map(() => null));
if ('probabilities' in p) {
  const c: ClassPrediction = p;
  show(c.predicted_label.toUpperCase(), c.probabilities[c.predicted_class], c.confidence);
} else {
  show(p.predicted_value.toFixed(2));
}
const batch: Float32Array = model.predictBatch(new Float64Array(model.numFeatures * 2), 2);
const many: Prediction[] = [...model.predictRecords([{ a: 1, b: 'x', c: null }]), ...model.predictCsv('a,b\\n1,2')];

const opts: ExplainOptions = { method: 'permutation', permutations: 4, seed: 1 };
const one: SingleExplanation = model.explain([1, 'x', null], opts);
show(one.base_value + Object.values(one.values).reduce((a, b) => a + b, 0) - one.output, one.standard_errors?.['a'], one.label);
const byIndex: SingleExplanation = model.explain([1], { classIndex: 2, method: 'exact' });
const all: Explanation = model.explain([1], { class: 'all' });
if ('classes' in all) show(all.classes.map((c) => c.class), all.background_rows);
else show(all.values);

const api: ApiMlResponse = model.predictRequest({ data: { features: [1, 2] }, model_id: model.modelId });
show('predictions' in api ? api.predictions.length : api.model_id);
const v2 = model.predictRequest('{"inputs": []}', 'oip_v2');
show(v2.outputs.map((o) => o.shape), model.predictRequest(new Uint8Array(), 'kserve_v1').predictions);
const protocol: Protocol = 'mlflow';
const reply: Reply = model.handle(protocol, new Uint8Array(), 'text/csv', 100, null);
show(reply.status, reply.contentType, reply.body.byteLength, reply.jsonHeaderLength ?? 0, model.oipMetadata().byteLength);
show(errorReply('api_ml', 404, 'model_not_found', 'no such model').body, Model.modelIdOf(new Uint8Array(), 'application/json') ?? 'newest');
show(model.metadata().preprocessing.features.map((f) => f.kind), model.metadata().classes?.length, batch, many, task, byIndex);

try {
  model.predict(['x']);
} catch (e) {
  if (isInferenceError(e)) {
    const err: InferenceError = e;
    if (err.kind === 'unknown_category' || err.kind === 'not_a_number') {
      const column: string = err.column; // value errors name their column
      show(column, err.row, err.status, err.message);
    } else if (err.kind === 'hash_mismatch') {
      const status: 500 = err.status;
      show(status);
    } else if (err.kind === 'malformed_json') {
      const row: null = err.row;
      show(row);
    }
  }
}
model.free();

// @ts-expect-error: not a protocol
model.handle('grpc', new Uint8Array());
// @ts-expect-error: not an explain method
model.explain([1], { method: 'kernel' });
// @ts-expect-error: fromBundle takes bytes
Model.fromBundle('model.safetensors');
// @ts-expect-error: a request error has no column
const nope: string = (null as unknown as Extract<InferenceError, { kind: 'malformed_json' }>).column;
`;

/** The CommonJS side: \`require\` resolves the \`require\` types (index.d.cts). */
const TYPED_CJS = `import inference = require('@trainer/inference');
declare const bytes: Uint8Array;
const model = inference.Model.fromBundle(bytes);
const p: inference.Prediction = model.predict([1, 'a', null]);
export const seen: boolean = inference.isInferenceError(p) || model.taskType === 'regression';
export const ready: Promise<void> = inference.init();
`;
