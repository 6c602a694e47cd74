#!/usr/bin/env node
// Node benchmark of our inference wasm (the npm package @trainer/inference, its Node entry)
// against onnxruntime-web (its wasm backend) running the same model exported to ONNX.
//
// Measures, for both, in one run (see bench/wasm/README.md):
//   * .wasm size (raw and gzip -9): ours = inference-wasm/pkg/inference_bg.wasm (the one .wasm
//     of the package, what a browser downloads); ORT = dist/ort-wasm-simd-threaded.wasm;
//   * cold start in a fresh Node process (median of --cold-runs), with the in-wasm weights
//     hash and with it skipped (verifyHash: false, as after SRI): load the JS glue,
//     compile + instantiate the wasm, load the model (ours: Model.fromBundle of
//     model.safetensors; ORT: InferenceSession.create of model.onnx); and the same plus
//     the first single-row prediction;
//   * single-row latency: median and p99 over --single calls (after a warm-up), each call
//     timed on its own; rows cycle through real rows of the data; ours: model.predict(array)
//     -> {predicted_class, ..., probabilities}; ORT: await session.run({input: 1xF tensor});
//   * batch throughput: rows/s of one call on --batch-rows rows (median of --batch-reps);
//     ours: model.predictBatch(Float64Array, nRows); ORT: session.run on an NxF tensor;
//   * agreement: max |Δp| and arg-max agreement of the two on the batch rows.
// Both take the same raw rows: the ONNX graph includes the StandardScaler (`trainer export --format onnx`).
// ORT runs single-threaded (ort.env.wasm.numThreads = ORT_THREADS, default 1), like ours.
//
// Run through bench/wasm/run.sh (trains the model, exports ONNX, installs onnxruntime-web).
// Directly:
//   node bench/wasm/bench.mjs --bundle DIR/model.safetensors --onnx model.onnx --data rows.csv
//     [--single 20000] [--batch-rows 10000] [--batch-reps 20] [--cold-runs 5]
// Prints one markdown table on stdout; progress on stderr.

import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import zlib from 'node:zlib';

const require = createRequire(import.meta.url);
const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '../..');
const PKG_NODE = path.join(ROOT, 'inference-wasm/pkg/node.cjs');
const WEB_WASM = path.join(ROOT, 'inference-wasm/pkg/inference_bg.wasm');
const ORT_DIST = path.join(HERE, 'node_modules/onnxruntime-web/dist');
const ORT_THREADS = Number(process.env.ORT_THREADS || 1);

function parseArgs(argv) {
  const opts = { single: 20000, batchRows: 10000, batchReps: 20, coldRuns: 5, warmup: 2000 };
  const names = { '--bundle': 'bundle', '--onnx': 'onnx', '--data': 'data', '--cold': 'cold',
    '--single': 'single', '--batch-rows': 'batchRows', '--batch-reps': 'batchReps',
    '--cold-runs': 'coldRuns', '--warmup': 'warmup' };
  for (let i = 0; i < argv.length; i += 2) {
    const key = names[argv[i]];
    if (!key || argv[i + 1] === undefined) throw new Error(`bad argument ${argv[i]}`);
    opts[key] = typeof opts[key] === 'number' ? Number(argv[i + 1]) : argv[i + 1];
  }
  return opts;
}

const log = (msg) => process.stderr.write(`[wasm] ${msg}\n`);
const nowMs = () => Number(process.hrtime.bigint()) / 1e6;

async function loadOrt() {
  const ort = await import('onnxruntime-web');
  ort.env.wasm.numThreads = ORT_THREADS;
  ort.env.wasm.proxy = false;
  return ort;
}

function percentile(sorted, p) {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

function median(values) {
  const s = [...values].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

// Numeric rows of a CSV (header skipped), feature columns only (the last column is the label).
function readRows(file, nFeatures, limit) {
  const lines = fs.readFileSync(file, 'utf8').split('\n');
  const rows = [];
  for (let i = 1; i < lines.length && rows.length < limit; i++) {
    if (!lines[i]) continue;
    rows.push(lines[i].split(',').slice(0, nFeatures).map(Number));
  }
  return rows;
}

// ----------------------------------------------------------------- cold start (child process)
async function coldStart(which, opts) {
  const t0 = nowMs();
  let ready;
  let first;
  if (which === 'ours' || which === 'ours_nohash') {
    const { Model } = require(PKG_NODE);
    // ours_nohash: the caller verified the bytes already (Subresource Integrity in a browser).
    const model = Model.fromBundle(fs.readFileSync(opts.bundle), { verifyHash: which === 'ours' });
    ready = nowMs();
    model.predict(new Array(model.numFeatures).fill(0));
    first = nowMs();
  } else {
    const ort = await loadOrt();
    const session = await ort.InferenceSession.create(fs.readFileSync(opts.onnx),
      { executionProviders: ['wasm'] });
    ready = nowMs();
    const n = Number(process.env.N_FEATURES);
    await session.run({ [session.inputNames[0]]: new ort.Tensor('float32', new Float32Array(n), [1, n]) });
    first = nowMs();
  }
  process.stdout.write(JSON.stringify({ ready_ms: ready - t0, first_ms: first - t0 }) + '\n');
}

function measureCold(which, opts, nFeatures) {
  const runs = [];
  for (let i = 0; i < opts.coldRuns; i++) {
    const r = spawnSync(process.execPath,
      [fileURLToPath(import.meta.url), '--cold', which, '--bundle', opts.bundle, '--onnx', opts.onnx],
      { encoding: 'utf8', env: { ...process.env, N_FEATURES: String(nFeatures) } });
    if (r.status !== 0) throw new Error(`cold start (${which}) failed:\n${r.stderr}`);
    runs.push(JSON.parse(r.stdout.trim().split('\n').pop()));
  }
  return { ready: median(runs.map((r) => r.ready_ms)), first: median(runs.map((r) => r.first_ms)) };
}

// ------------------------------------------------------------------------------ single rows
// `call` may be synchronous (ours) or return a promise (ORT); a synchronous call is not awaited.
async function timeSingle(n, warmup, call) {
  for (let i = 0; i < warmup; i++) {
    const r = call(i);
    if (r instanceof Promise) await r;
  }
  const times = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const t0 = process.hrtime.bigint();
    const r = call(i);
    if (r instanceof Promise) await r;
    times[i] = Number(process.hrtime.bigint() - t0) / 1e3; // µs
  }
  times.sort();
  return { p50: percentile(times, 50), p99: percentile(times, 99) };
}

async function timeBatch(reps, call) {
  for (let i = 0; i < 3; i++) await call();
  const times = [];
  for (let i = 0; i < reps; i++) {
    const t0 = nowMs();
    await call();
    times.push(nowMs() - t0);
  }
  return median(times);
}

// ------------------------------------------------------------------------------------ main
async function main() {
  const opts = parseArgs(process.argv.slice(2));
  if (opts.cold) return coldStart(opts.cold, opts);
  for (const k of ['bundle', 'onnx', 'data']) if (!opts[k]) throw new Error(`--${k} is required`);

  const { Model } = require(PKG_NODE);
  const model = Model.fromBundle(fs.readFileSync(opts.bundle));
  const nFeatures = model.numFeatures;
  const meta = model.metadata();
  const nClasses = meta.architecture.output_dim;
  const ort = await loadOrt();
  const session = await ort.InferenceSession.create(fs.readFileSync(opts.onnx),
    { executionProviders: ['wasm'] });

  const rows = readRows(opts.data, nFeatures, Math.max(opts.batchRows, 1000));
  if (rows.length < opts.batchRows) throw new Error(`${opts.data} has fewer than ${opts.batchRows} rows`);
  const singleRows = rows.slice(0, 1000);
  const singleF32 = singleRows.map((r) => Float32Array.from(r));

  // Sizes.
  const size = (file) => {
    const bytes = fs.readFileSync(file);
    return { raw: bytes.length, gzip: zlib.gzipSync(bytes, { level: 9 }).length };
  };
  const ortWasm = path.join(ORT_DIST, 'ort-wasm-simd-threaded.wasm');
  const sizes = { ours: size(WEB_WASM), ort: size(ortWasm) };

  log(`cold start: ${opts.coldRuns} fresh processes each`);
  const cold = {
    ours: measureCold('ours', opts, nFeatures),
    nohash: measureCold('ours_nohash', opts, nFeatures),
    ort: measureCold('ort', opts, nFeatures),
  };

  log(`single-row latency: ${opts.single} calls each (after ${opts.warmup} warm-up calls)`);
  const single = {
    ours: await timeSingle(opts.single, opts.warmup, (i) => model.predict(singleRows[i % singleRows.length])),
    ort: await timeSingle(opts.single, opts.warmup, async (i) => {
      const t = new ort.Tensor('float32', singleF32[i % singleF32.length], [1, nFeatures]);
      const out = await session.run({ [session.inputNames[0]]: t });
      return out.probabilities.data;
    }),
  };

  log(`batch: ${opts.batchRows} rows, median of ${opts.batchReps} calls`);
  const flat64 = new Float64Array(opts.batchRows * nFeatures);
  rows.slice(0, opts.batchRows).forEach((r, i) => flat64.set(r, i * nFeatures));
  const flat32 = Float32Array.from(flat64);
  let oursProbs;
  let ortProbs;
  const batchMs = {
    ours: await timeBatch(opts.batchReps, () => { oursProbs = model.predictBatch(flat64, opts.batchRows); }),
    ort: await timeBatch(opts.batchReps, async () => {
      const out = await session.run({ [session.inputNames[0]]: new ort.Tensor('float32', flat32, [opts.batchRows, nFeatures]) });
      ortProbs = out.probabilities.data;
    }),
  };

  // Agreement on the batch rows (and single-row predict against predictBatch).
  let maxDp = 0;
  let sameArgmax = 0;
  const argmax = (p, i) => {
    let best = 0;
    for (let k = 1; k < nClasses; k++) if (p[i * nClasses + k] > p[i * nClasses + best]) best = k;
    return best;
  };
  for (let i = 0; i < opts.batchRows; i++) {
    for (let k = 0; k < nClasses; k++) {
      maxDp = Math.max(maxDp, Math.abs(oursProbs[i * nClasses + k] - ortProbs[i * nClasses + k]));
    }
    if (argmax(oursProbs, i) === argmax(ortProbs, i)) sameArgmax++;
  }
  let maxDpSingle = 0;
  for (let i = 0; i < 100; i++) {
    const p = model.predict(rows[i]).probabilities;
    for (let k = 0; k < nClasses; k++) {
      maxDpSingle = Math.max(maxDpSingle, Math.abs(p[k] - oursProbs[i * nClasses + k]));
    }
  }

  // The table.
  const kib = (b) => `${(b / 1024).toFixed(1)} KiB`;
  const mib = (b) => (b >= 1 << 20 ? `${(b / (1 << 20)).toFixed(2)} MiB` : kib(b));
  const ms = (v) => v.toFixed(1);
  const us = (v) => v.toFixed(1);
  const rps = (msTime) => opts.batchRows / (msTime / 1e3);
  const ratio = (a, b) => `${(a / b).toFixed(2)}×`;
  const lines = [
    '| metric | ours (Rust → wasm, wasm-bindgen) | onnxruntime-web (wasm backend) | ours ÷ ORT |',
    '|---|---:|---:|---:|',
    `| .wasm size, raw | ${mib(sizes.ours.raw)} | ${mib(sizes.ort.raw)} | ${ratio(sizes.ours.raw, sizes.ort.raw)} |`,
    `| .wasm size, gzip -9 | ${mib(sizes.ours.gzip)} | ${mib(sizes.ort.gzip)} | ${ratio(sizes.ours.gzip, sizes.ort.gzip)} |`,
    `| cold start: load + instantiate + model, ms (median of ${opts.coldRuns}) | ${ms(cold.ours.ready)} | ${ms(cold.ort.ready)} | ${ratio(cold.ours.ready, cold.ort.ready)} |`,
    `| cold start to first prediction, ms | ${ms(cold.ours.first)} | ${ms(cold.ort.first)} | ${ratio(cold.ours.first, cold.ort.first)} |`,
    `| cold start to first prediction, weights hash skipped (\`verifyHash: false\`, bytes verified by SRI), ms | ${ms(cold.nohash.first)} | — | ${ratio(cold.nohash.first, cold.ort.first)} |`,
    `| single-row predict p50, µs (${opts.single.toLocaleString('en-US')} calls) | ${us(single.ours.p50)} | ${us(single.ort.p50)} | ${ratio(single.ours.p50, single.ort.p50)} |`,
    `| single-row predict p99, µs | ${us(single.ours.p99)} | ${us(single.ort.p99)} | ${ratio(single.ours.p99, single.ort.p99)} |`,
    `| batch of ${opts.batchRows.toLocaleString('en-US')} rows: rows/s (median of ${opts.batchReps}) | ${Math.round(rps(batchMs.ours)).toLocaleString('en-US')} | ${Math.round(rps(batchMs.ort)).toLocaleString('en-US')} | ${ratio(rps(batchMs.ours), rps(batchMs.ort))} |`,
    `| agreement ours vs ORT on the ${opts.batchRows.toLocaleString('en-US')} batch rows | max \\|Δp\\| ${maxDp.toExponential(2)}, same arg-max ${sameArgmax.toLocaleString('en-US')}/${opts.batchRows.toLocaleString('en-US')} | — | |`,
  ];
  const arch = meta.architecture;
  const ortVersion = JSON.parse(fs.readFileSync(path.join(ORT_DIST, '../package.json'), 'utf8')).version;
  lines.push('', `Model: ${arch.input_dim} inputs → ${arch.hidden_dims.join(',')} (${arch.activation}, BatchNorm) → ${arch.output_dim} classes; ` +
    `Node ${process.version}, onnxruntime-web ${ortVersion} (numThreads ${ORT_THREADS}); ` +
    `predict vs predictBatch max |Δp| ${maxDpSingle.toExponential(2)}.`);
  process.stdout.write(lines.join('\n') + '\n');
}

main().catch((e) => {
  process.stderr.write(`${e.stack || e}\n`);
  process.exit(1);
});
