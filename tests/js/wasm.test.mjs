// The wasm package (@trainer/inference, its Node entry) predicts exactly as the native CLI does.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import {
  loadPackage,
  trainer,
  assertSamePrediction,
  maxAbsDiff,
  nativePredict,
  nativePredictCsv,
  nativePredictError,
  readCsv,
  tempDir,
  train,
} from './helpers.mjs';

/** Deep equality with numbers equal to a relative 1e-12. */
function assertDeepClose(a, b, path = '$') {
  if (typeof a === 'number' && typeof b === 'number') {
    assert.ok(Math.abs(a - b) <= 1e-12 * Math.max(1, Math.abs(b)), `${path}: ${a} vs ${b}`);
  } else if (a && b && typeof a === 'object' && typeof b === 'object') {
    assert.deepEqual(Object.keys(a).sort(), Object.keys(b).sort(), `${path}: keys`);
    for (const k of Object.keys(b)) assertDeepClose(a[k], b[k], `${path}.${k}`);
  } else {
    assert.equal(a, b, path);
  }
}

describe('wasm inference (Node)', () => {
  let wasm;
  let tmp;
  const models = {}; // name -> {id, dir, bytes, model}

  before(async () => {
    wasm = await loadPackage();
    tmp = tempDir('wasm-test');
    const fit = (name, args) => {
      const s = train(tmp.dir, [...args, '--save-test-rows']);
      const bytes = readFileSync(join(s.model_dir, 'model.safetensors'));
      models[name] = { id: s.model_id, dir: s.model_dir, bytes, model: wasm.Model.fromBundle(bytes) };
      assert.equal(s.model_dir, join(tmp.dir, s.model_id));
    };
    fit('esg', ['--epochs', '20']);
    fit('iris', ['--data', 'tests/fixtures/iris.csv', '--target', 'species', '--epochs', '30']);
    fit('diabetes', ['--data', 'tests/fixtures/diabetes.csv', '--target', 'progression', '--task', 'regression', '--epochs', '30']);
  });

  after(() => {
    for (const m of Object.values(models)) m.model.free();
    tmp?.cleanup();
  });

  test('getters and metadata describe the bundle', () => {
    const { model, dir, id } = models.esg;
    const meta = model.metadata();
    const onDisk = JSON.parse(readFileSync(join(dir, 'metadata.json'), 'utf8'));
    assert.equal(meta.model_id, id);
    // Equal up to float parsing (serde_json without `float_roundtrip` may be 1 ulp off).
    assertDeepClose(meta, onDisk);
    assert.deepEqual(model.featureNames, meta.preprocessing.feature_names);
    assert.equal(model.numFeatures, 15);
    assert.equal(model.taskType, 'classification');
    assert.deepEqual(meta.classes, ['A', 'B', 'C', 'D', 'E']);
    const kinds = Object.fromEntries(meta.preprocessing.features.map((f) => [f.name, f.kind]));
    assert.equal(kinds.sector, 'categorical');
    assert.equal(kinds.carbon_intensity, 'numeric');
    assert.ok(meta.history.length > 0 && 'train_loss' in meta.history[0]);
    assert.equal(models.diabetes.model.taskType, 'regression');
  });

  test('fromParts (weights + metadata.json) equals fromBundle', () => {
    const { dir, bytes, model } = models.esg;
    const parts = wasm.Model.fromParts(bytes, readFileSync(join(dir, 'metadata.json'), 'utf8'));
    const row = Array(15).fill(null);
    assert.deepEqual(parts.predict(row), model.predict(row));
    parts.free();
  });

  for (const name of ['esg', 'iris', 'diabetes']) {
    test(`${name}: predict and predictRecords match trainer predict --input on the test rows`, () => {
      const { model, dir, id } = models[name];
      const csv = join(dir, 'test_rows.csv');
      const want = nativePredictCsv(tmp.dir, id, csv);
      const { header, rows } = readCsv(csv);
      assert.equal(rows.length, want.length);
      const names = model.featureNames;
      const pos = names.map((n) => header.indexOf(n));
      // Raw text cells, as the CLI passes them.
      const records = rows.map((r) => Object.fromEntries(names.map((n, j) => [n, r[pos[j]]])));
      const byRecords = model.predictRecords(records);
      const kinds = model.metadata().preprocessing.features.map((f) => f.kind);
      rows.forEach((r, i) => {
        const text = pos.map((p) => r[p]);
        assertSamePrediction(assert, model.predict(text), want[i], 1e-5, `row ${i} (text)`);
        // Numbers as numbers, empty cells as null.
        const typed = text.map((v, j) => (v === '' ? null : kinds[j] === 'numeric' ? Number(v) : v));
        assertSamePrediction(assert, model.predict(typed), want[i], 1e-5, `row ${i} (typed)`);
        assertSamePrediction(assert, byRecords[i], want[i], 1e-5, `record ${i}`);
      });
    });
  }

  test('a row with missing values matches trainer predict --features', () => {
    const { model, dir, id } = models.esg;
    const row = [85.2, 47.3, null, 60.6, 11.1, null, 97.3, 4.1, 72.9, 'Industrials', null, 'Mid', 2834.5, 27029, 18];
    assertSamePrediction(assert, model.predict(row), nativePredict(tmp.dir, id, row));
    const allMissing = Array(15).fill(null);
    assertSamePrediction(assert, model.predict(allMissing), nativePredict(tmp.dir, id, allMissing));
    // Absent record keys are missing too.
    assertSamePrediction(assert, model.predictRecords([{ sector: 'Energy' }])[0], model.predict([...Array(9).fill(null), 'Energy', null, null, null, null, null]));
  });

  test('numeric and text cells give the same object, with the numbers of the native JSON', () => {
    for (const name of ['iris', 'diabetes']) {
      const { model, id } = models[name];
      const n = model.numFeatures;
      const nums = Array.from({ length: n }, (_, j) => (j % 3 === 1 ? null : 0.37 * (j + 1)));
      const got = model.predict(nums); // numbers and nulls: read by the JS half in one call
      // NaN and undefined are missing like null; text cells take the per-cell path.
      assert.deepEqual(model.predict(nums.map((v) => (v === null ? NaN : v))), got);
      assert.deepEqual(model.predict(nums.map((v) => (v === null ? undefined : v))), got);
      assert.deepEqual(model.predict(nums.map((v) => (v === null ? 'NA' : String(v)))), got);
      assert.deepEqual(model.predictRecords([Object.fromEntries(model.featureNames.map((f, j) => [f, nums[j]]))])[0], got);
      // Exactly: every probability is the API's shortest-f32 decimal, as JSON.parse reads it.
      const native = nativePredict(tmp.dir, id, nums);
      for (const key of Object.keys(got)) assert.deepEqual(got[key], native[key], `${name}.${key}`);
    }
  });

  test('predictBatch matches native for a numeric-only classifier and a regressor', () => {
    for (const name of ['iris', 'diabetes']) {
      const { model, dir, id } = models[name];
      const csv = join(dir, 'test_rows.csv');
      const want = nativePredictCsv(tmp.dir, id, csv);
      const { header, rows } = readCsv(csv);
      const pos = model.featureNames.map((n) => header.indexOf(n));
      const n = model.numFeatures;
      const x = new Float64Array(rows.length * n);
      rows.forEach((r, i) => pos.forEach((p, j) => (x[i * n + j] = r[p] === '' ? NaN : Number(r[p]))));
      const out = model.predictBatch(x, rows.length);
      assert.ok(out instanceof Float32Array);
      if (model.taskType === 'classification') {
        const k = model.metadata().classes.length;
        assert.equal(out.length, rows.length * k);
        want.forEach((w, i) => {
          const probs = Array.from(out.subarray(i * k, (i + 1) * k));
          assert.ok(maxAbsDiff(probs, w.probabilities) <= 1e-5, `row ${i}`);
          assert.equal(probs.indexOf(Math.max(...probs)), w.predicted_class, `row ${i} class`);
        });
      } else {
        assert.equal(out.length, rows.length);
        want.forEach((w, i) => {
          const d = Math.abs(out[i] - w.predicted_value);
          assert.ok(d <= 1e-5 * Math.max(1, Math.abs(w.predicted_value)), `row ${i}: ${out[i]} vs ${w.predicted_value}`);
        });
      }
    }
  });

  test('predictRequest answers every request shape as the HTTP API, with typed errors', () => {
    const { model, dir, id } = models.esg;
    const csv = join(dir, 'test_rows.csv');
    const want = nativePredictCsv(tmp.dir, id, csv);
    const { header, rows } = readCsv(csv);
    const names = model.featureNames;
    const pos = names.map((n) => header.indexOf(n));
    const text = rows.slice(0, 20).map((r) => pos.map((p) => r[p]));
    const records = rows.slice(0, 20).map((r) => Object.fromEntries(header.map((h, j) => [h, r[j]])));
    const single = model.predictRequest({ data: { features: text[0] } });
    assert.equal(single.model_id, id);
    assertSamePrediction(assert, single, want[0]);
    for (const body of [{ features: text }, { data: { records } }, { instances: records }, { instances: text }]) {
      const out = model.predictRequest(JSON.stringify(body));
      assert.equal(out.model_id, id);
      out.predictions.forEach((p, i) => assertSamePrediction(assert, p, want[i], 1e-5, `${Object.keys(body)[0]} ${i}`));
    }
    const v1 = model.predictRequest({ instances: records.slice(0, 3) }, 'kserve_v1');
    assert.deepEqual(Object.keys(v1), ['predictions']);
    // Errors carry kind, row, column and the protocol's status as fields.
    assert.throws(() => model.predictRequest({ features: [text[0], text[1].with(9, 'Crypto')] }), (e) => {
      assert.equal(e.kind, 'unknown_category');
      assert.equal(e.row, 1);
      assert.equal(e.column, 'sector');
      assert.equal(e.status, 400);
      return true;
    });
    assert.throws(() => model.predictRequest('{"features": [1'), (e) => e.kind === 'malformed_json' && e.status === 400);
    assert.throws(() => model.predictRequest({ data: {} }), (e) => e.kind === 'validation_error' && e.status === 422);
    // The transport-level call never throws for a bad request: it answers in the protocol's shape.
    const reply = model.handle('kserve_v1', new TextEncoder().encode('{"instances": 5}'), 'application/json');
    assert.equal(reply.status, 400);
    assert.equal(reply.contentType, 'application/json');
    assert.deepEqual(Object.keys(JSON.parse(new TextDecoder().decode(reply.body))), ['error']);
    // CSV with a header, matched by name, as the page pastes it.
    const csvText = [header.join(','), ...rows.slice(0, 5).map((r) => r.map((c) => (c.includes(',') ? `"${c}"` : c)).join(','))].join('\n');
    model.predictCsv(csvText).forEach((p, i) => assertSamePrediction(assert, p, want[i], 1e-5, `csv ${i}`));
    assert.throws(() => model.predictCsv(`${header.join(',')}\n${rows[0].slice(1).join(',')}`), (e) => e.kind === 'malformed_csv' && /row 0 has 15 fields, the header has 16/.test(e.message));
  });

  test('explain gives additive Shapley values, as the native CLI does', () => {
    const { model, dir, id } = models.esg;
    const { header, rows } = readCsv(join(dir, 'test_rows.csv'));
    const row = model.featureNames.map((n) => rows[0][header.indexOf(n)]);
    const e = model.explain(row);
    const p = model.predict(row);
    assert.equal(e.class, p.predicted_class);
    assert.equal(e.method, 'permutation');
    assert.equal(e.background, 'stored');
    const total = e.base_value + Object.values(e.values).reduce((a, b) => a + b, 0);
    assert.ok(Math.abs(total - p.confidence) <= 1e-5, `${total} vs ${p.confidence}`);
    // The same numbers as trainer predict --explain --json.
    const native = JSON.parse(trainer(['predict', '--models-dir', tmp.dir, '--model', id, '--json', '--explain', '--features', row.map((v) => (v.includes(',') ? `"${v}"` : v)).join(',')]).trim());
    // Equal up to the last bits of f32 (wasm's SIMD sums in another order than native's).
    const close = (a, b, path) => {
      if (typeof a === 'number') return assert.ok(Math.abs(a - b) <= 1e-6, `${path}: ${a} vs ${b}`);
      if (a && typeof a === 'object') {
        assert.deepEqual(Object.keys(a), Object.keys(b), path);
        for (const k of Object.keys(a)) close(a[k], b[k], `${path}.${k}`);
      } else assert.equal(a, b, path);
    };
    close(e, native.explanation, 'explanation');
    const all = model.explain(row, { class: 'all', method: 'exact' });
    assert.equal(all.classes.length, 5);
    // Exact values cost 2^n coalitions: a server's limits (handle's) refuse them past 10 features.
    const ask = JSON.stringify({ data: { features: row }, explain: { method: 'exact' } });
    const refused = model.handle('api_ml', ask, 'application/json');
    assert.equal(refused.status, 422);
    assert.match(new TextDecoder().decode(refused.body), /at most 10 features/);
    const byIndex = model.explain(row, { classIndex: 2 });
    assert.equal(byIndex.class, 2);
    for (const m of ['iris', 'diabetes']) {
      const x = models[m].model.featureNames.map(() => 0.5);
      const ex = models[m].model.explain(x);
      assert.equal(ex.method, 'exact'); // few features
      const out = models[m].model.predict(x);
      const y = out.predicted_value ?? out.confidence;
      const sumx = ex.base_value + Object.values(ex.values).reduce((a, b) => a + b, 0);
      assert.ok(Math.abs(sumx - y) <= 1e-5 * Math.max(1, Math.abs(y)), `${m}: ${sumx} vs ${y}`);
    }
    assert.throws(() => model.explain(row, { class: 'Z' }), (err) => err.kind === 'validation_error');
  });

  test('errors are JS Errors with the native messages', () => {
    const { model, dir, id } = models.esg;
    const row = [85.2, 47.3, null, 60.6, 11.1, 12.9, 97.3, 4.1, 72.9, 'Industrials', 'Asia Pacific', 'Mid', 2834.5, 27029, 18];

    const unknown = row.with(9, 'Crypto');
    const native = nativePredictError(tmp.dir, id, unknown);
    assert.throws(
      () => model.predict(unknown),
      (e) => {
        assert.ok(e instanceof Error);
        assert.match(e.message, /^unknown category "Crypto" for column `sector` \(known: "Consumer", /);
        assert.ok(native.includes(e.message), `native stderr ${native} should hold ${e.message}`);
        return true;
      },
    );
    assert.throws(() => model.predictRecords([{ sector: 'Energy' }, { sector: 'Crypto' }]), (e) => {
      assert.match(String(e), /^Error: row 1: unknown category "Crypto"/);
      assert.equal(e.kind, 'unknown_category');
      return true;
    });
    assert.throws(() => model.predict(row.slice(1)), /wrong number of features: expected 15, got 14/);
    assert.throws(() => model.predict(row.with(0, 'abc')), /column `carbon_intensity` expects a number, got "abc"/);
    assert.throws(() => model.predict(row.with(0, Infinity)), /column `carbon_intensity` got an infinite number or one beyond f32.s range/);
    assert.throws(() => model.predict(row.with(0, {})), /column `carbon_intensity` got an unsupported value/);
    assert.throws(() => model.predictRecords([5]), /row 0: expected an object/);
    assert.throws(() => model.predictBatch(new Float64Array(15), 1), /predictBatch takes numbers only/);
    assert.throws(() => models.iris.model.predictBatch(new Float64Array(7), 2), /batch of 7 values does not hold 2 rows of 4 features/);

    assert.throws(() => wasm.Model.fromBundle(new Uint8Array([1, 2, 3])), /not a valid safetensors file/);
    const bytes = Uint8Array.from(models.esg.bytes);
    bytes[bytes.length - 3] ^= 0x40; // flip a bit of the last tensor
    assert.throws(() => wasm.Model.fromBundle(bytes), /weights_sha256 mismatch|non-finite/);
    assert.throws(() => wasm.Model.fromParts(models.esg.bytes, '{"format_version": 1}'), /invalid bundle metadata/);
  });

  test('arguments of the wrong JS type and hostile values get typed errors, never a trap', () => {
    const { model } = models.esg;
    const iris = models.iris.model;
    const kind = (k) => (e) => e instanceof Error && e.kind === k;
    // Metadata as a parsed object (an easy mistake) instead of its text.
    const meta = JSON.parse(readFileSync(join(models.esg.dir, 'metadata.json'), 'utf8'));
    assert.throws(() => wasm.Model.fromParts(models.esg.bytes, meta), kind('invalid_argument'));
    assert.throws(() => wasm.Model.fromBundle({ length: -1 }), kind('invalid_argument'));
    assert.throws(() => wasm.Model.fromBundle(null), kind('invalid_argument'));
    assert.throws(() => model.predictCsv(5), kind('invalid_argument'));
    assert.throws(() => model.predictRequest({}, 5), kind('invalid_argument'));
    // Bytes as an ArrayBuffer or a view of one load like a Uint8Array.
    const b = models.esg.bytes;
    const copy = b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength);
    for (const bytes of [copy, new DataView(copy)]) wasm.Model.fromBundle(bytes).free();
    // predictBatch: a non-number is refused by row and column, not read as missing.
    assert.throws(() => iris.predictBatch([1, 2, 3, 'x'], 1), (e) => e.kind === 'not_a_number' && e.row === 0 && e.column === iris.featureNames[3]);
    assert.throws(() => iris.predictBatch(new Float64Array(4), 2 ** 32 + 1), kind('invalid_argument'));
    assert.deepEqual(iris.predictBatch([5.1, 3.5, null, 0.2], 1), iris.predictBatch(new Float64Array([5.1, 3.5, NaN, 0.2]), 1));
    // predict takes typed arrays; a symbol or function cell is an error, a BigInt a number.
    const row = [5.1, 3.5, 1.4, 0.2];
    assert.deepEqual(iris.predict(new Float64Array(row)), iris.predict(row));
    assert.throws(() => iris.predict([5.1, 3.5, 1.4, Symbol('s')]), kind('not_a_number'));
    assert.throws(() => iris.predict([5.1, 3.5, 1.4, () => 4]), kind('not_a_number'));
    assert.deepEqual(iris.predict([5.1, 3.5, 1.4, 0n]), iris.predict([5.1, 3.5, 1.4, 0]));
    // A claimed shape far beyond its data is refused before anything is allocated for it.
    const huge = { inputs: [{ name: 'x', shape: [2 ** 30, 4], datatype: 'FP32', data: [] }] };
    assert.throws(() => iris.predictRequest(huge, 'oip_v2'), (e) => e.kind === 'validation_error' && /more than its data can hold|too many elements/.test(e.message));
    // Binary outputs are bytes: predictRequest says to use handle.
    const bin = { inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: row }], parameters: { binary_data_output: true } };
    assert.throws(() => iris.predictRequest(bin, 'oip_v2'), kind('not_implemented'));
    assert.equal(iris.handle('oip_v2', new TextEncoder().encode(JSON.stringify(bin)), 'application/json').status, 200);
    assert.throws(() => iris.handle('oip_v2', new Uint8Array(), null, NaN), kind('invalid_argument'));
    assert.equal(iris.handle('api_ml', JSON.stringify({ data: { features: row } }), 'application/json', Infinity).status, 200);
    assert.throws(() => wasm.errorReply('api_ml', 99999, 'k', 'm'), kind('invalid_argument'));
    // free() twice is a no-op.
    const m = wasm.Model.fromBundle(models.iris.bytes);
    m.free();
    m.free();
  });
});
