#!/usr/bin/env node
// Times `model.explain(row)` of our wasm package (inference-wasm/pkg, its Node entry; one
// thread) on every row of a CSV, each call timed on its own after a warm-up, and writes the
// times and the explanations as JSON. Run through bench/explain/run.sh.
//
//   node bench/explain/explain.mjs --bundle DIR/model.safetensors --rows rows.csv --out out.json
//     [--warmup 5] [--method auto|exact|permutation]
//
// rows.csv: a header of feature names (in the model's order) and raw rows; numeric-looking
// cells are passed as numbers, other cells as text, empty cells as null (missing).
// out.json: {features, method, times_ms: [...], explanations: [{class, base_value, output,
// values: [φ in feature order]}]}.

import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const { Model } = require(path.join(ROOT, 'inference-wasm/pkg/node.cjs'));

const opts = { warmup: 5, method: 'auto' };
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i += 2) {
  const key = { '--bundle': 'bundle', '--rows': 'rows', '--out': 'out', '--warmup': 'warmup', '--method': 'method' }[argv[i]];
  if (!key || argv[i + 1] === undefined) throw new Error(`bad argument ${argv[i]}`);
  opts[key] = key === 'warmup' ? Number(argv[i + 1]) : argv[i + 1];
}
for (const k of ['bundle', 'rows', 'out']) if (!opts[k]) throw new Error(`--${k} is required`);

const model = Model.fromBundle(fs.readFileSync(opts.bundle));
const features = model.featureNames;
const lines = fs.readFileSync(opts.rows, 'utf8').split('\n').filter((l) => l.length > 0);
const header = lines[0].split(',');
if (header.join(',') !== features.join(',')) throw new Error(`${opts.rows}: header is not the model's features`);
const cell = (s) => (s === '' ? null : Number.isFinite(Number(s)) ? Number(s) : s);
const rows = lines.slice(1).map((l) => l.split(',').map(cell));

const options = opts.method === 'auto' ? {} : { method: opts.method };
for (let i = 0; i < opts.warmup; i++) model.explain(rows[i % rows.length], options);
const times = [];
const explanations = [];
let method;
for (const row of rows) {
  const t0 = process.hrtime.bigint();
  const e = model.explain(row, options);
  times.push(Number(process.hrtime.bigint() - t0) / 1e6);
  method = e.method;
  explanations.push({ class: e.class, base_value: e.base_value, output: e.output,
    values: features.map((f) => e.values[f]) });
}
fs.writeFileSync(opts.out, JSON.stringify({ features, method, times_ms: times, explanations }));
process.stderr.write(`[explain] wasm: ${rows.length} explanations (${method}) of ${path.basename(opts.rows)}\n`);
