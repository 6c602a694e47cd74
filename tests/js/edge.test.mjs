// The edge worker (web/edge/worker.js) under workerd answers POST /predict as the HTTP API does,
// with the native CLI's predictions.
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import {
  ROOT,
  assertSamePrediction,
  freePort,
  nativePredictCsv,
  readCsv,
  startProcess,
  tempDir,
  train,
  waitForHttp,
} from './helpers.mjs';

function workerdBin() {
  for (const p of ['node_modules/@cloudflare/workerd-linux-64/bin/workerd', 'node_modules/.bin/workerd']) {
    if (existsSync(join(ROOT, p))) return join(ROOT, p);
  }
  throw new Error('workerd not found under node_modules: run npm install');
}

/** Lay out the worker as deployed: worker.js, config.capnp, the wasm glue and the bundle side by side. */
function layOut(dir, bundlePath) {
  const pkg = join(ROOT, 'web/pkg');
  for (const f of ['inference.js', 'inference_bg.wasm']) {
    if (!existsSync(join(pkg, f))) throw new Error(`web/pkg/${f} is missing: run scripts/build-wasm.sh`);
    copyFileSync(join(pkg, f), join(dir, f));
  }
  for (const f of ['worker.js', 'config.capnp']) copyFileSync(join(ROOT, 'web/edge', f), join(dir, f));
  copyFileSync(bundlePath, join(dir, 'model.safetensors'));
}

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
    mkdirSync(worker);
    layOut(worker, join(summary.model_dir, 'model.safetensors'));
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    workerd = await startProcess(workerdBin(), ['serve', 'config.capnp', '--socket-addr', `http=127.0.0.1:${port}`], {
      cwd: worker,
    });
    try {
      await waitForHttp(`${base}/model`);
    } catch (e) {
      throw new Error(`${e.message}\nworkerd output:\n${workerd.output()}`);
    }
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
  // Test rows as typed JSON values: numbers for numeric columns, text for categories, null for empty.
  const typedRow = (r) =>
    names.map((n) => {
      const v = r[header.indexOf(n)];
      return v === '' ? null : Number.isNaN(Number(v)) ? v : Number(v);
    });

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
      const { status, body } = await post({ data: { features: typedRow(rows[i]) }, model_id: summary.model_id });
      assert.equal(status, 200);
      assert.equal(body.model_id, summary.model_id);
      assert.deepEqual(Object.keys(body).sort(), ['confidence', 'model_id', 'predicted_class', 'predicted_label', 'probabilities']);
      assertSamePrediction(assert, body, native[i], 1e-5, `row ${i}`);
    }
  });

  test('a batch of rows at the top level matches trainer predict --input', async () => {
    const { status, body } = await post({ features: rows.map(typedRow) });
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
    // Absent columns are missing.
    const sparse = await post({ records: [{ sector: 'Energy' }, {}] });
    assert.equal(sparse.status, 200);
    assert.equal(sparse.body.predictions.length, 2);
  });

  test('malformed requests get the API error shape and status', async () => {
    const row = typedRow(rows[0]);
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
      i % 2 ? typedRow(r) : Object.fromEntries(header.map((h, j) => [h, r[j]])),
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
