// The edge worker (web/edge/worker.js) under workerd, laid out as deployed with the package
// (@trainer/inference, installed from its tarball): the built-in bundle answers every protocol as
// the HTTP API does, with the native CLI's predictions; with MODELS_URL (a second `trainer serve`)
// or MODELS_KV it loads models by id at run time, caches them per isolate and revalidates them.
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import {
  ROOT,
  assertNativeJson,
  assertSamePrediction,
  freePort,
  installPackage,
  nativePredictCsv,
  readCsv,
  startProcess,
  tempDir,
  train,
  trainerBin,
  waitForHttp,
} from './helpers.mjs';

function workerdBin() {
  for (const p of ['node_modules/@cloudflare/workerd-linux-64/bin/workerd', 'node_modules/.bin/workerd']) {
    if (existsSync(join(ROOT, p))) return join(ROOT, p);
  }
  throw new Error('workerd not found under node_modules: run npm install');
}

/**
 * Lay out the worker as deployed: worker.js and config.capnp from web/edge, the package installed
 * from its tarball (node_modules/@trainer/inference), and the built-in bundle (none: an empty file).
 */
function layOut(dir, bundlePath) {
  mkdirSync(dir, { recursive: true });
  for (const f of ['worker.js', 'config.capnp']) copyFileSync(join(ROOT, 'web/edge', f), join(dir, f));
  installPackage(dir);
  if (bundlePath) copyFileSync(bundlePath, join(dir, 'model.safetensors'));
  else writeFileSync(join(dir, 'model.safetensors'), '');
}

/** The worker's settings (config.capnp reads them from the environment): unset unless a test sets them. */
const SETTINGS = ['MODELS_URL', 'MODELS_TOKEN', 'DEFAULT_MODEL', 'MODEL_CACHE_ENTRIES', 'MODEL_CACHE_BYTES', 'MODEL_REVALIDATE_SECONDS'];

/** workerd serving `config` (in `dir`) on a free port; returns {base, stop, output}. */
async function startWorkerd(dir, env = {}, config = 'config.capnp') {
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  env = { ...Object.fromEntries(SETTINGS.map((k) => [k, ''])), ...env };
  const proc = await startProcess(workerdBin(), ['serve', config, '--socket-addr', `http=127.0.0.1:${port}`], { cwd: dir, env });
  try {
    await waitForHttp(`${base}/v2/health/live`);
  } catch (e) {
    await proc.stop();
    throw new Error(`${e.message}\nworkerd output:\n${proc.output()}`);
  }
  return { base, stop: proc.stop, output: proc.output };
}

/** Test rows as typed JSON values: numbers for numeric columns, text for categories, null for empty. */
const typedRow = (header, names, r) =>
  names.map((n) => {
    const v = r[header.indexOf(n)];
    return v === '' ? null : Number.isNaN(Number(v)) ? v : Number(v);
  });

/** A prediction without the answer's `model_id`, for exact comparison with `trainer predict --json`. */
const bare = ({ model_id: _, ...p }) => p;

describe('edge worker under workerd', () => {
  let tmp;
  let workerd;
  let base;
  let summary;
  let header;
  let rows;
  let native;
  let names;

  before(async () => {
    tmp = tempDir('edge-test');
    const models = join(tmp.dir, 'models');
    summary = train(models, ['--epochs', '20', '--save-test-rows']);
    const csv = join(summary.model_dir, 'test_rows.csv');
    native = nativePredictCsv(models, summary.model_id, csv);
    ({ header, rows } = readCsv(csv));
    const worker = join(tmp.dir, 'worker');
    layOut(worker, join(summary.model_dir, 'model.safetensors'));
    workerd = await startWorkerd(worker);
    base = workerd.base;
    names = (await (await fetch(`${base}/model`)).json()).feature_names;
  });

  after(async () => {
    await workerd?.stop();
    tmp?.cleanup();
  });

  const post = async (body, headers = { 'content-type': 'application/json' }) => {
    const r = await fetch(`${base}/predict`, {
      method: 'POST',
      headers,
      body: typeof body === 'string' ? body : JSON.stringify(body),
    });
    return { status: r.status, body: await r.json(), headers: r.headers };
  };
  const typed = (r) => typedRow(header, names, r);

  test('GET /model names the bundle', async () => {
    const r = await fetch(`${base}/model`);
    assert.equal(r.status, 200);
    const info = await r.json();
    assert.equal(info.model_id, summary.model_id);
    assert.equal(info.task_type, 'classification');
    assert.equal(info.feature_names.length, 15);
  });

  test('single rows (under data, with model_id) match trainer predict', async () => {
    for (let i = 0; i < 25; i++) {
      const { status, body } = await post({ data: { features: typed(rows[i]) }, model_id: summary.model_id });
      assert.equal(status, 200);
      assert.equal(body.model_id, summary.model_id);
      assert.deepEqual(Object.keys(body).sort(), ['confidence', 'model_id', 'predicted_class', 'predicted_label', 'probabilities']);
      assertSamePrediction(assert, body, native[i], 1e-5, `row ${i}`);
    }
  });

  test('a batch of rows at the top level matches trainer predict --input', async () => {
    const { status, body } = await post({ features: rows.map(typed) });
    assert.equal(status, 200);
    assert.equal(body.model_id, summary.model_id);
    assert.equal(body.predictions.length, native.length);
    body.predictions.forEach((p, i) => assertSamePrediction(assert, p, native[i], 1e-5, `row ${i}`));
  });

  test('records of raw text cells match trainer predict --input', async () => {
    const records = rows.map((r) => Object.fromEntries(header.map((h, j) => [h, r[j]]))); // extra target column is ignored
    const { status, body } = await post({ data: { records } });
    assert.equal(status, 200);
    body.predictions.forEach((p, i) => assertSamePrediction(assert, p, native[i], 1e-5, `record ${i}`));
    // Absent columns are missing; a record naming no feature is an error.
    const sparse = await post({ records: [{ sector: 'Energy' }, { region: 'Europe' }] });
    assert.equal(sparse.status, 200);
    assert.equal(sparse.body.predictions.length, 2);
    const none = await post({ records: [{ sector: 'Energy' }, { sectr: 'Energy' }] });
    assert.equal(none.status, 400);
    assert.equal(none.body.error, 'unknown_columns');
    assert.equal(none.body.row, 1);
  });

  test('malformed requests get the API error shape and status', async () => {
    const row = typed(rows[0]);
    const cases = [
      [post('{"features": [1, 2', undefined), 400, 'malformed_json'],
      [post({ features: [1] }, { 'content-type': 'text/plain' }), 415, 'unsupported_media_type'],
      [post({ data: {} }), 422, 'validation_error'],
      [post({ features: 'abc' }), 422, 'validation_error'],
      [post({ features: [row], records: [{}] }), 422, 'validation_error'],
      [post({ records: [1, 2] }), 422, 'validation_error'],
      [post([1, 2, 3]), 422, 'validation_error'],
      [post({ features: row.slice(1) }), 400, 'wrong_feature_count'],
      [post({ features: [row, row.with(9, 'Crypto')] }), 400, 'unknown_category'],
      [post({ features: row.with(0, 'abc') }), 400, 'not_a_number'],
      [post({ features: row.with(0, [1]) }), 400, 'invalid_value'],
      [post({ features: row, model_id: 'model_1999_01_01_001' }), 404, 'model_not_found'],
    ];
    for (const [i, [pending, status, kind]] of cases.entries()) {
      const r = await pending;
      assert.equal(r.status, status, `case ${i}: ${JSON.stringify(r.body)}`);
      assert.deepEqual(Object.keys(r.body).filter((k) => !['row', 'column'].includes(k)).sort(), ['error', 'message'], `case ${i}`);
      assert.equal(r.body.error, kind, `case ${i}: ${r.body.message}`);
      assert.equal(r.headers.get('content-type'), 'application/json');
    }
    const unknown = await post({ features: [row, row.with(9, 'Crypto')] });
    assert.match(unknown.body.message, /^row 1: unknown category "Crypto" for column `sector` \(known: /);
    // Row and column are fields, not only words in the message.
    assert.equal(unknown.body.row, 1);
    assert.equal(unknown.body.column, 'sector');

    const get = await fetch(`${base}/predict`);
    assert.equal(get.status, 405);
    assert.equal(get.headers.get('allow'), 'POST');
    assert.equal((await get.json()).error, 'method_not_allowed');
    const nowhere = await fetch(`${base}/nowhere`);
    assert.equal(nowhere.status, 404);
    assert.equal((await nowhere.json()).error, 'not_found');
  });

  test('Open Inference Protocol and MLflow requests are answered as trainer serve answers them', async () => {
    const n = 20;
    // One input per feature (BYTES for categories), numbers as JSON, missing as null / "".
    const inputs = names.map((name, j) => {
      const col = rows.slice(0, n).map((r) => r[header.indexOf(name)]);
      const text = Number.isNaN(Number(col.find((v) => v !== '') ?? 'x'));
      return { name, shape: [n], datatype: text ? 'BYTES' : 'FP32', data: col.map((v) => (text ? v : v === '' ? null : Number(v))) };
    });
    const r = await fetch(`${base}/v2/models/${summary.model_id}/infer`, { method: 'POST', body: JSON.stringify({ id: 'x1', inputs }) });
    assert.equal(r.status, 200);
    const v2 = await r.json();
    assert.equal(v2.id, 'x1');
    assert.equal(v2.model_name, summary.model_id);
    const out = Object.fromEntries(v2.outputs.map((o) => [o.name, o]));
    assert.deepEqual(out.probabilities.shape, [n, 5]);
    for (let i = 0; i < n; i++) {
      const got = { predicted_class: out.predicted_class.data[i], predicted_label: out.predicted_label.data[i], confidence: Math.max(...out.probabilities.data.slice(i * 5, i * 5 + 5)), probabilities: out.probabilities.data.slice(i * 5, i * 5 + 5) };
      assertSamePrediction(assert, got, native[i], 1e-5, `v2 row ${i}`);
    }
    const meta = await (await fetch(`${base}/v2/models/latest`)).json();
    assert.equal(meta.inputs.length, 15);
    assert.equal((await (await fetch(`${base}/v2/health/ready`)).json()).ready, true);
    const bad = await fetch(`${base}/v2/models/${summary.model_id}/infer`, { method: 'POST', body: '{"inputs": []}' });
    assert.equal(bad.status, 400);
    assert.deepEqual(Object.keys(await bad.json()), ['error']);

    const records = rows.slice(0, n).map((r) => Object.fromEntries(header.map((h, j) => [h, r[j]])));
    const ml = await fetch(`${base}/invocations`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ dataframe_records: records }) });
    assert.equal(ml.status, 200);
    (await ml.json()).predictions.forEach((p, i) => assertSamePrediction(assert, p, native[i], 1e-5, `mlflow row ${i}`));
    const two = await fetch(`${base}/invocations`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"instances": [], "inputs": []}' });
    assert.equal(two.status, 400);
    assert.equal((await two.json()).error_code, 'BAD_REQUEST');
  });

  test('KServe V1 instances (arrays or objects) work on /predict and /v1/models/{m}:predict', async () => {
    const instances = rows.slice(0, 30).map((r, i) =>
      i % 2 ? typed(r) : Object.fromEntries(header.map((h, j) => [h, r[j]])),
    );
    const viaApi = await post({ instances });
    assert.equal(viaApi.status, 200);
    assert.equal(viaApi.body.model_id, summary.model_id);
    const r = await fetch(`${base}/v1/models/${summary.model_id}:predict`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ instances }),
    });
    assert.equal(r.status, 200);
    const v1 = await r.json();
    assert.deepEqual(Object.keys(v1), ['predictions']);
    v1.predictions.forEach((p, i) => {
      assertSamePrediction(assert, p, native[i], 1e-5, `instance ${i}`);
      assert.deepEqual(p, viaApi.body.predictions[i]);
    });
    const missing = await fetch(`${base}/v1/models/nope:predict`, { method: 'POST', body: JSON.stringify({ instances }) });
    assert.equal(missing.status, 404);
    assert.deepEqual(Object.keys(await missing.json()), ['error']);
  });
});

/** `http_requests_total` of the bundle route by status, from the server's Prometheus text. */
async function bundleFetches(server) {
  const text = await (await fetch(`${server}/metrics`)).text();
  const counts = { total: 0 };
  for (const m of text.matchAll(/^http_requests_total\{route="([^"]*)",method="GET",status="(\d+)"\} (\d+)$/gm)) {
    if (m[1] === '/api/ml/models/{model_id}/bundle') {
      counts[m[2]] = Number(m[3]);
      counts.total += Number(m[3]);
    }
  }
  return counts;
}

/** Every request the server saw, by route (to show the worker sent nothing for a refused id). */
async function allRequests(server) {
  const text = await (await fetch(`${server}/metrics`)).text();
  let n = 0;
  for (const m of text.matchAll(/^http_requests_total\{route="([^"]*)",[^}]*\} (\d+)$/gm)) if (m[1] !== '/metrics') n += Number(m[2]);
  return n;
}

/** Bad ids: refused before any fetch, answered as the HTTP API answers them (404 model_not_found). */
const BAD_IDS = ['../../etc/passwd', 'model_2026_12_01_001/../../x', '..', 'model_1', 'MODEL_2026_12_01_001', 'model_2026_12_01_001?x=1', `model_${'1'.repeat(300)}`, 'model_2026_12_01_001 '];

/** Two models (a classifier and a regressor), their test rows and `trainer predict --json` on them. */
function trainTwo(modelsDir) {
  const fit = (args) => {
    const s = train(modelsDir, [...args, '--epochs', '3', '--save-test-rows']);
    const csv = join(s.model_dir, 'test_rows.csv');
    const { header, rows } = readCsv(csv);
    const names = JSON.parse(readFileSync(join(s.model_dir, 'metadata.json'), 'utf8')).preprocessing.feature_names;
    return { id: s.model_id, dir: s.model_dir, rows: rows.slice(0, 12).map((r) => typedRow(header, names, r)), native: nativePredictCsv(modelsDir, s.model_id, csv).slice(0, 12) };
  };
  const iris = fit(['--data', 'tests/fixtures/iris.csv', '--target', 'species']);
  const diabetes = fit(['--data', 'tests/fixtures/diabetes.csv', '--target', 'progression', '--task', 'regression']); // the newest
  return { iris, diabetes };
}

const postJson = async (base, path, body) => {
  const r = await fetch(`${base}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: r.status, body: await r.json() };
};

describe('edge worker: models by id from a trainer server (MODELS_URL)', () => {
  const REVALIDATE_S = 2;
  let tmp;
  let server; // trainer serve, the model source
  let serverUrl;
  let workerd;
  let base;
  let m; // {iris, diabetes}
  let firstLoad; // when the first bundles were fetched
  let revalidatedAt; // when the iris model was revalidated

  before(async () => {
    tmp = tempDir('edge-byid-test');
    const modelsDir = join(tmp.dir, 'models');
    m = trainTwo(modelsDir);
    server = await startProcess(trainerBin(), ['serve', '--host', '127.0.0.1', '--port', '0', '--models-dir', modelsDir, '--workers', '0'], {
      ready: /listening on (http:\/\/127\.0\.0\.1:\d+)/,
    });
    serverUrl = server.match[1];
    const worker = join(tmp.dir, 'worker');
    layOut(worker, null); // no built-in model: every model comes from the server
    workerd = await startWorkerd(worker, { MODELS_URL: serverUrl, MODEL_REVALIDATE_SECONDS: String(REVALIDATE_S), MODEL_CACHE_ENTRIES: '4' });
    base = workerd.base;
  });

  after(async () => {
    await workerd?.stop();
    await server?.stop();
    tmp?.cleanup();
  });

  test('model_id switches per request; each answer is trainer predict --json; each bundle is fetched once', async () => {
    assert.deepEqual(await bundleFetches(serverUrl), { total: 0 });
    firstLoad = Date.now();
    for (let i = 0; i < 12; i++) {
      for (const which of i % 2 ? ['diabetes', 'iris'] : ['iris', 'diabetes']) {
        const { id, rows, native } = m[which];
        const { status, body } = await postJson(base, '/api/ml/predict', { data: { features: rows[i] }, model_id: id });
        assert.equal(status, 200, JSON.stringify(body));
        assert.equal(body.model_id, id);
        assertNativeJson(assert, bare(body), native[i], `${which} row ${i}`); // the CLI's numbers
      }
    }
    // Batches and the protocols' URLs name the model too.
    const batch = await postJson(base, '/predict', { features: m.iris.rows, model_id: m.iris.id });
    assertNativeJson(assert, batch.body.predictions, m.iris.native, 'batch');
    const v1 = await postJson(base, `/v1/models/${m.diabetes.id}:predict`, { instances: m.diabetes.rows });
    assert.equal(v1.status, 200);
    assertNativeJson(assert, v1.body.predictions, m.diabetes.native, 'v1');
    const v2 = await fetch(`${base}/v2/models/${m.iris.id}`);
    assert.equal((await v2.json()).name, m.iris.id);
    assert.ok(Date.now() - firstLoad < REVALIDATE_S * 1000, 'the requests above ran within one revalidation interval');
    // 50 predictions, two bundle downloads: one per model, none repeated.
    assert.deepEqual(await bundleFetches(serverUrl), { total: 2, 200: 2 });
  });

  test('no model_id (or latest) is the server\'s newest model', async () => {
    const { status, body } = await postJson(base, '/api/ml/predict', { features: m.diabetes.rows[0] });
    assert.equal(status, 200);
    assert.equal(body.model_id, m.diabetes.id);
    assertNativeJson(assert, bare(body), m.diabetes.native[0]);
    assert.equal((await (await fetch(`${base}/model`)).json()).model_id, m.diabetes.id);
    const latest = await postJson(base, '/v1/models/latest:predict', { instances: [m.diabetes.rows[1]] });
    assertNativeJson(assert, latest.body.predictions, [m.diabetes.native[1]]);
  });

  test('an unknown id is 404 model_not_found, in each protocol\'s shape', async () => {
    const before = await bundleFetches(serverUrl);
    const unknown = 'model_1999_01_01_001';
    const r = await postJson(base, '/api/ml/predict', { features: m.iris.rows[0], model_id: unknown });
    assert.equal(r.status, 404);
    assert.deepEqual(r.body, { error: 'model_not_found', message: `model \`${unknown}\` not found` });
    const v2 = await postJson(base, `/v2/models/${unknown}/infer`, { inputs: [] });
    assert.equal(v2.status, 404);
    assert.deepEqual(Object.keys(v2.body), ['error']);
    // The server was asked (twice: no negative caching), and answered 404.
    const now = await bundleFetches(serverUrl);
    assert.equal((now[404] ?? 0) - (before[404] ?? 0), 2);
  });

  test('a malformed id is refused before any fetch, with the API\'s typed error', async () => {
    const before = await allRequests(serverUrl);
    for (const id of BAD_IDS) {
      const r = await postJson(base, '/api/ml/predict', { features: m.iris.rows[0], model_id: id });
      assert.equal(r.status, 404, id);
      assert.equal(r.body.error, 'model_not_found', id);
      assert.match(r.body.message, /^model `.*` not found \(not a model id\)$/s);
    }
    // In URLs too (`%2e%2e` is `..` to the URL parser: no route at all).
    for (const path of ['/v1/models/..%2F..%2Fapi%2Fml%2Fmodels:predict', '/v2/models/model_x%zz/infer', '/v2/models/%2e%2e/infer']) {
      const r = await fetch(`${base}${path}`, { method: 'POST', body: '{"instances": []}' });
      assert.equal(r.status, 404, path);
      assert.equal(typeof (await r.json()).error, 'string', path);
    }
    const wrongType = await postJson(base, '/api/ml/predict', { features: m.iris.rows[0], model_id: 5 });
    assert.equal(wrongType.status, 422);
    assert.equal(wrongType.body.error, 'validation_error');
    assert.equal(await allRequests(serverUrl), before, 'the worker sent the server nothing');
  });

  test('after the revalidation interval, If-None-Match gets a 304 and the cached model stays', async () => {
    const wait = firstLoad + REVALIDATE_S * 1000 + 200 - Date.now();
    if (wait > 0) await new Promise((ok) => setTimeout(ok, wait));
    revalidatedAt = Date.now();
    const { status, body } = await postJson(base, '/api/ml/predict', { data: { features: m.iris.rows[3] }, model_id: m.iris.id });
    assert.equal(status, 200);
    assertNativeJson(assert, bare(body), m.iris.native[3]);
    const counts = await bundleFetches(serverUrl);
    assert.equal(counts[200], 2, 'no second download');
    assert.ok(counts[304] >= 1, `revalidated with a 304: ${JSON.stringify(counts)}`);
  });

  test('the cache is bounded: one entry evicts the other model; a bundle over MODEL_CACHE_BYTES is model_too_large', async () => {
    const worker = join(tmp.dir, 'worker');
    const one = await startWorkerd(worker, { MODELS_URL: serverUrl, MODEL_CACHE_ENTRIES: '1' });
    try {
      const before = (await bundleFetches(serverUrl))[200];
      for (const [i, which] of ['iris', 'diabetes', 'iris', 'iris'].entries()) {
        const { id, rows, native } = m[which];
        const { status, body } = await postJson(one.base, '/api/ml/predict', { features: rows[i], model_id: id });
        assert.equal(status, 200, JSON.stringify(body));
        assertNativeJson(assert, bare(body), native[i], `${which} row ${i}`); // evicted models are freed, never used
      }
      assert.equal((await bundleFetches(serverUrl))[200] - before, 3, 'iris, diabetes (evicting iris), iris again; then cached');
    } finally {
      await one.stop();
    }
    const tiny = await startWorkerd(worker, { MODELS_URL: serverUrl, MODEL_CACHE_BYTES: '1000' });
    try {
      const r = await postJson(tiny.base, '/api/ml/predict', { features: m.iris.rows[0], model_id: m.iris.id });
      assert.equal(r.status, 500);
      assert.equal(r.body.error, 'model_too_large');
      assert.match(r.body.message, /MODEL_CACHE_BYTES = 1000/);
    } finally {
      await tiny.stop();
    }
  });

  test('with the server gone, cached models are still served (stale if error); an uncached one is 503 store_unavailable', async () => {
    await server.stop();
    // Past the interval: the revalidation fails, and the cached model answers all the same.
    const wait = revalidatedAt + REVALIDATE_S * 1000 + 200 - Date.now();
    if (wait > 0) await new Promise((ok) => setTimeout(ok, wait));
    const { status, body } = await postJson(base, '/api/ml/predict', { features: m.iris.rows[5], model_id: m.iris.id });
    assert.equal(status, 200);
    assertNativeJson(assert, bare(body), m.iris.native[5]);
    const gone = await postJson(base, '/api/ml/predict', { features: m.iris.rows[5], model_id: 'model_2000_01_01_001' });
    assert.equal(gone.status, 503);
    assert.equal(gone.body.error, 'store_unavailable');
  });
});

describe('edge worker: models by id from a KV namespace (MODELS_KV)', () => {
  let tmp;
  let kv; // a KV service as workerd speaks to it: GET /<key>?urlencoded=true
  const store = new Map(); // key -> bytes
  const reads = new Map(); // key -> GETs
  let workerd;
  let base;
  let m;

  before(async () => {
    tmp = tempDir('edge-kv-test');
    m = trainTwo(join(tmp.dir, 'models'));
    for (const { id, dir } of Object.values(m)) store.set(id, readFileSync(join(dir, 'model.safetensors')));
    store.set('model_2000_01_01_001', store.get(m.iris.id)); // a bundle under another model's id
    kv = createServer((req, res) => {
      const key = decodeURIComponent(new URL(req.url, 'http://kv').pathname.slice(1));
      reads.set(key, (reads.get(key) ?? 0) + 1);
      const bytes = req.method === 'GET' ? store.get(key) : undefined;
      if (bytes) res.writeHead(200, { 'content-type': 'application/octet-stream' }).end(bytes);
      else res.writeHead(404).end();
    });
    await new Promise((ok) => kv.listen(0, '127.0.0.1', ok));
    const worker = join(tmp.dir, 'worker');
    layOut(worker, null);
    // The deployed config, plus a KV namespace backed by the service above.
    const config = readFileSync(join(worker, 'config.capnp'), 'utf8')
      .replace('services = [', `services = [\n    (name = "kv", external = (address = "127.0.0.1:${kv.address().port}", http = ())),`)
      .replace('bindings = [', 'bindings = [\n    (name = "MODELS_KV", kvNamespace = "kv"),');
    assert.match(config, /MODELS_KV/);
    writeFileSync(join(worker, 'kv.capnp'), config);
    workerd = await startWorkerd(worker, { DEFAULT_MODEL: m.iris.id }, 'kv.capnp');
    base = workerd.base;
  });

  after(async () => {
    await workerd?.stop();
    await new Promise((ok) => (kv ? kv.close(ok) : ok()));
    tmp?.cleanup();
  });

  test('bundles by id from KV match trainer predict --json and are read once', async () => {
    for (let i = 0; i < 6; i++) {
      for (const which of ['iris', 'diabetes']) {
        const { id, rows, native } = m[which];
        const { status, body } = await postJson(base, '/api/ml/predict', { features: rows[i], model_id: id });
        assert.equal(status, 200, JSON.stringify(body));
        assertNativeJson(assert, bare(body), native[i], `${which} row ${i}`);
      }
    }
    const byDefault = await postJson(base, '/api/ml/predict', { features: m.iris.rows[2] }); // DEFAULT_MODEL
    assert.equal(byDefault.body.model_id, m.iris.id);
    assertNativeJson(assert, bare(byDefault.body), m.iris.native[2]);
    assert.equal(reads.get(m.iris.id), 1);
    assert.equal(reads.get(m.diabetes.id), 1);
  });

  test('unknown, malformed and misfiled ids get typed errors', async () => {
    const unknown = await postJson(base, '/api/ml/predict', { features: m.iris.rows[0], model_id: 'model_1999_01_01_001' });
    assert.equal(unknown.status, 404);
    assert.equal(unknown.body.error, 'model_not_found');
    assert.equal(reads.get('model_1999_01_01_001'), 1);
    const keys = reads.size;
    for (const id of BAD_IDS) {
      const r = await postJson(base, '/api/ml/predict', { features: m.iris.rows[0], model_id: id });
      assert.equal(r.status, 404, id);
      assert.equal(r.body.error, 'model_not_found');
    }
    assert.equal(reads.size, keys, 'no KV read for a malformed id');
    const misfiled = await postJson(base, '/api/ml/predict', { features: m.iris.rows[0], model_id: 'model_2000_01_01_001' });
    assert.equal(misfiled.status, 500);
    assert.equal(misfiled.body.error, 'corrupt_model', misfiled.body.message);
    assert.match(misfiled.body.message, new RegExp(`is model \`${m.iris.id}\``));
  });
});
