// Shared helpers of the JS tests: the trainer binary, native predictions, processes and ports.
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const OUT = join(ROOT, 'tests/out');
/** The npm package @trainer/inference as scripts/pack.sh leaves it. */
export const PKG = join(ROOT, 'inference-wasm/pkg');

/** The package's manifest; throws when the package was not built. */
export function packageJson() {
  const path = join(PKG, 'package.json');
  if (!existsSync(path)) throw new Error(`${path} is missing: run scripts/build-wasm.sh (or scripts/pack.sh)`);
  return JSON.parse(readFileSync(path, 'utf8'));
}

/** The `npm pack` tarball of the package (inference-wasm/trainer-inference-VERSION.tgz). */
export function packageTarball() {
  const { version } = packageJson();
  const path = join(ROOT, `inference-wasm/trainer-inference-${version}.tgz`);
  if (!existsSync(path)) throw new Error(`${path} is missing: run scripts/build-wasm.sh (or scripts/pack.sh)`);
  return path;
}

/** The package under Node (its `node` + `import` entry), from inference-wasm/pkg. */
export async function loadPackage() {
  packageJson();
  return import(pathToFileURL(join(PKG, 'node.mjs')).href);
}

/**
 * A scratch npm project in `dir` with the package's TARBALL installed (as a user installs it:
 * node_modules/@trainer/inference); `type` is the project's package.json "type".
 */
export function installPackage(dir, type = 'module') {
  writeFileSync(join(dir, 'package.json'), `${JSON.stringify({ name: 'scratch', private: true, type }, null, 2)}\n`);
  execFileSync('npm', ['install', '--no-audit', '--no-fund', '--no-package-lock', '--ignore-scripts', packageTarball()], {
    cwd: dir,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return join(dir, 'node_modules/@trainer/inference');
}

/** The trainer CLI: $TRAINER_BIN (relative paths from the repo root) or target/release/trainer. */
export function trainerBin() {
  const bin = process.env.TRAINER_BIN ?? 'target/release/trainer';
  const path = isAbsolute(bin) ? bin : join(ROOT, bin);
  if (!existsSync(path)) {
    throw new Error(`trainer binary not found at ${path}: build it (cargo build --release -p trainer) or set TRAINER_BIN`);
  }
  return path;
}

export function trainer(args, opts = {}) {
  return execFileSync(trainerBin(), args, { cwd: ROOT, encoding: 'utf8', maxBuffer: 64 << 20, stdio: ['ignore', 'pipe', 'pipe'], ...opts });
}

/** A fresh temp dir, removed by the returned cleanup. */
export function tempDir(prefix) {
  const dir = mkdtempSync(join(tmpdir(), `${prefix}-`));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Train into `modelsDir`; returns the JSON summary (model_id, model_dir, …). */
export function train(modelsDir, args = []) {
  const out = trainer(['train', '--models-dir', modelsDir, '--json', ...args]);
  const lines = out.trim().split('\n');
  return JSON.parse(lines.at(-1));
}

/** `trainer tune` into `modelsDir`; returns the JSON summary (model_id, model_dir, trials, best_trial, …). */
export function tune(modelsDir, args = []) {
  const out = trainer(['tune', '--models-dir', modelsDir, '--json', ...args]);
  return JSON.parse(out.trim().split('\n').at(-1));
}

/**
 * Environment for a `trainer serve` whose log lists every request it answered (tower-http's
 * trace at debug, no colours); read them with `servedRequests`.
 */
export const REQUEST_LOG_ENV = { RUST_LOG: 'info,tower_http=debug', NO_COLOR: '1' };

/** The requests a `trainer serve` started with REQUEST_LOG_ENV answered, from its log text: [{method, path, status}]. */
export function servedRequests(log) {
  const plain = log.replace(/\x1b\[[0-9;]*m/g, '');
  const re = /request\{method=(\S+) uri=(\S+) [^}]*\}: tower_http::trace::on_response: finished processing request .*?status=(\d+)/g;
  return [...plain.matchAll(re)].map(([, method, uri, status]) => ({ method, path: uri, status: Number(status) }));
}

/** One CSV line from raw values (null = empty = missing). */
export function csvLine(values) {
  return values
    .map((v) => {
      const s = v == null ? '' : String(v);
      return /[",\n\r]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
    })
    .join(',');
}

/** `trainer predict --features … --json` for one row. */
export function nativePredict(modelsDir, id, values) {
  const out = trainer(['predict', '--model', id, '--models-dir', modelsDir, '--json', '--features', csvLine(values)]);
  return JSON.parse(out.trim().split('\n').at(-1));
}

/** `trainer predict --input file.csv --json`: one prediction per row. */
export function nativePredictCsv(modelsDir, id, csvPath) {
  const out = trainer(['predict', '--model', id, '--models-dir', modelsDir, '--json', '--input', csvPath]);
  return out
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
}

/** `trainer predict` that must fail; returns its stderr. */
export function nativePredictError(modelsDir, id, values) {
  try {
    nativePredict(modelsDir, id, values);
  } catch (e) {
    return String(e.stderr);
  }
  throw new Error('trainer predict unexpectedly succeeded');
}

/** A small CSV reader (quotes allowed): returns {header, rows} of strings. */
export function readCsv(path) {
  const text = readFileSync(path, 'utf8');
  const rows = [];
  let row = [];
  let field = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c !== '"') field += c;
      else if (text[i + 1] === '"') field += text[++i];
      else quoted = false;
    } else if (c === '"') quoted = true;
    else if (c === ',') {
      row.push(field);
      field = '';
    } else if (c === '\n' || c === '\r') {
      if (c === '\r' && text[i + 1] === '\n') i++;
      row.push(field);
      rows.push(row);
      row = [];
      field = '';
    } else field += c;
  }
  if (field || row.length) rows.push([...row, field]);
  const [header, ...data] = rows.filter((r) => r.length > 1 || r[0] !== '');
  return { header, rows: data };
}

/** Largest |a_i - b_i|. */
export function maxAbsDiff(a, b) {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  return a.reduce((m, x, i) => Math.max(m, Math.abs(x - b[i])), 0);
}

/** Assert two predictions agree: same label/class and probabilities within `tol` (or the value). */
export function assertSamePrediction(assert, got, want, tol = 1e-5, what = '') {
  if (want.predicted_value !== undefined) {
    const d = Math.abs(got.predicted_value - want.predicted_value);
    assert.ok(d <= tol * Math.max(1, Math.abs(want.predicted_value)), `${what} value ${got.predicted_value} vs ${want.predicted_value}`);
    return;
  }
  assert.equal(got.predicted_label, want.predicted_label, `${what} label`);
  assert.equal(got.predicted_class, want.predicted_class, `${what} class`);
  const d = maxAbsDiff(got.probabilities, want.probabilities);
  assert.ok(d <= tol, `${what} max |Δprob| = ${d}`);
  assert.ok(Math.abs(got.confidence - want.confidence) <= tol, `${what} confidence`);
}

/** A port that was free a moment ago on 127.0.0.1. */
export function freePort() {
  return new Promise((ok, fail) => {
    const s = createServer();
    s.on('error', fail);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => ok(port));
    });
  });
}

/**
 * Spawn a long-running process and wait until a stdout/stderr line matches `ready`; returns
 * {proc, match, output(), stop()}. Fails (with the output so far) if it exits or times out first.
 * Without `ready` it returns at once.
 */
export function startProcess(cmd, args, { ready, cwd = ROOT, timeoutMs = 20000, env } = {}) {
  const proc = spawn(cmd, args, { cwd, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const stop = () =>
    new Promise((ok) => {
      if (proc.exitCode !== null || proc.signalCode !== null) return ok();
      proc.once('exit', () => ok());
      proc.kill('SIGTERM');
      setTimeout(() => proc.kill('SIGKILL'), 3000).unref();
    });
  return new Promise((ok, fail) => {
    const timer = setTimeout(() => {
      stop();
      fail(new Error(`${cmd} did not get ready in ${timeoutMs} ms; output:\n${output}`));
    }, timeoutMs);
    const onData = (chunk) => {
      output += chunk;
      const match = ready && output.match(ready);
      if (match) {
        clearTimeout(timer);
        ok({ proc, match, output: () => output, stop });
      }
    };
    proc.stdout.setEncoding('utf8').on('data', onData);
    proc.stderr.setEncoding('utf8').on('data', onData);
    if (!ready) {
      clearTimeout(timer);
      ok({ proc, match: null, output: () => output, stop });
    }
    proc.once('error', (e) => {
      clearTimeout(timer);
      fail(e);
    });
    proc.once('exit', (code, signal) => {
      clearTimeout(timer);
      fail(new Error(`${cmd} exited (${code ?? signal}) before it was ready; output:\n${output}`));
    });
  });
}

/** Poll `url` until it answers (any status). */
export async function waitForHttp(url, timeoutMs = 15000) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    try {
      await fetch(url);
      return;
    } catch (e) {
      if (Date.now() > end) throw new Error(`${url} did not answer in ${timeoutMs} ms: ${e.message}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

/**
 * How far wasm predictions may be from `trainer predict --json`, in f32 units in the last place:
 * none. Every value is compared as printed JSON (the core prints shortest f32 decimals
 * everywhere), and the kernels take exp and tanh from `libm` on every target, so native and wasm
 * agree bit for bit.
 */
export const NATIVE_ULPS = 0;

/** Distance between two numbers as f32 values, in units in the last place. */
export function f32Ulps(a, b) {
  const bits = new Int32Array(new Float32Array([a, b]).buffer);
  const ordered = (i) => (i < 0 ? -(i & 0x7fffffff) : i);
  return Math.abs(ordered(bits[0]) - ordered(bits[1]));
}

/**
 * Assert that `got` (a prediction, or any JSON value holding them) is `want` as `trainer predict
 * --json` printed it: the same keys, labels and classes exactly, numbers equal or within
 * `NATIVE_ULPS` f32 ulps. Returns {exact, close}: how many numbers were equal and how many only close.
 */
export function assertNativeJson(assert, got, want, what = '$', stats = { exact: 0, close: 0 }) {
  if (typeof want === 'number' && typeof got === 'number') {
    if (got === want) stats.exact++;
    else {
      const d = f32Ulps(got, want);
      assert.ok(d <= NATIVE_ULPS, `${what}: ${got} vs native ${want} (${d} f32 ulps)`);
      stats.close++;
    }
  } else if (want && got && typeof want === 'object' && typeof got === 'object') {
    assert.deepEqual(Object.keys(got), Object.keys(want), `${what}: keys`);
    for (const k of Object.keys(want)) assertNativeJson(assert, got[k], want[k], `${what}.${k}`, stats);
  } else {
    assert.equal(got, want, what);
  }
  return stats;
}
