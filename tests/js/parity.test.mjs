// Golden parity in Node: the wasm build reproduces the trainer's own candle eval-mode outputs
// (tests/fixtures/parity/<case>/expected.json) on every fixture row — same argmax, max |Δp|
// ≤ 1e-5, regression relative error ≤ 1e-5. Regenerate the fixtures with
// `cargo run --release -p trainer --example parity_fixtures`.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { ROOT, loadPackage, readCsv } from './helpers.mjs';

const CASES = ['esg_relu', 'esg_gelu', 'esg_tanh', 'esg_leaky_relu', 'esg_sigmoid', 'diabetes_regression'];

test('wasm matches candle on every golden fixture row', async () => {
  const { Model } = await loadPackage();
  for (const name of CASES) {
    const dir = path.join(ROOT, 'tests/fixtures/parity', name);
    const model = Model.fromBundle(readFileSync(path.join(dir, 'model.safetensors')));
    const expected = JSON.parse(readFileSync(path.join(dir, 'expected.json'), 'utf8'));
    const { header, rows } = readCsv(path.join(dir, 'inputs.csv'));
    assert.deepEqual(header, model.featureNames, `${name}: inputs follow feature order`);
    assert.ok(rows.length >= 500, `${name}: ${rows.length} rows`);
    let worst = 0;
    rows.forEach((cells, i) => {
      // Cells as the CLI passes them: text, empty = missing.
      const p = model.predict(cells.map((c) => (c === '' ? null : c)));
      const want = expected[i];
      if (want.probabilities) {
        const argmax = want.probabilities.indexOf(Math.max(...want.probabilities));
        assert.equal(p.predicted_class, argmax, `${name} row ${i}`);
        p.probabilities.forEach((q, k) => { worst = Math.max(worst, Math.abs(q - want.probabilities[k])); });
      } else {
        worst = Math.max(worst, Math.abs(p.predicted_value - want.predicted_value) / Math.max(Math.abs(want.predicted_value), 1));
      }
    });
    assert.ok(worst <= 1e-5, `${name}: max difference ${worst}`);
  }
});
