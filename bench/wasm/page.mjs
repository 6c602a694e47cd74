#!/usr/bin/env node
// Cold start of the prediction page (web/) in headless Chromium: from navigation start to the
// first prediction on the page, with the bundle's bytes checked by the browser (Subresource
// Integrity, `Model.fromBundle(bytes, {verifyHash: false})`, the page's default) or hashed by the
// wasm core (`?verify=wasm`: no integrity, `verifyHash: true`, as before SRI).
//
// It trains the models into a temp dir, serves each with `trainer serve --web-dir web` on
// 127.0.0.1 (a free port; stopped at the end), and loads the page RUNS times per model and mode,
// each in a fresh browser context with the HTTP cache disabled (CDP Network.setCacheDisabled),
// the two modes interleaved (ABBA) after one discarded warm-up load each. Times are the page's
// own performance marks (web/app.js): `first-prediction` and `inference-ready` (startTime, from
// navigation start), the `bundle-download` (fetch to bytes, the integrity check included) and
// `from-bundle` (Model.fromBundle) measures, and the bundle's and the .wasm's Resource Timing
// (request start to response end). Prints one markdown table (also saved to
// bench/out/wasm-page.md); a benchmark, not a test.
//
// Run:   node bench/wasm/page.mjs [--runs 10] [--models default,large]
// Env:   TRAINER_BIN (default target/release/trainer; copied before use), CHROMIUM_BIN
//        (default /usr/bin/chromium), KEEP_TMP=1 keeps the temp dir.
// Needs: a release trainer, web/pkg (scripts/build-wasm.sh), Chromium, and playwright-core
//        (the repository's node_modules).
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import { chromium } from 'playwright-core';
import { startProcess } from '../../tests/js/helpers.mjs';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const { values: opt } = parseArgs({
  options: {
    runs: { type: 'string', default: '10' },
    models: { type: 'string', default: 'default,large' },
  },
});
const RUNS = Number(opt.runs);
if (!(Number.isInteger(RUNS) && RUNS >= 1)) throw new Error('--runs must be a positive integer');

/** The models: the README's default network on the embedded data, and a wide one (an 8 MiB bundle). */
const MODELS = {
  default: { what: 'ESG 15 → 128,64,32 → 5', args: ['--epochs', '5'] },
  large: {
    what: 'iris 4 → 1024,1024,1024 → 3',
    // No background or importance rows: the page explains every prediction, and exact Shapley
    // values over 100 background rows of this network would dominate the load.
    args: ['--data', 'tests/fixtures/iris.csv', '--target', 'species', '--hidden', '1024,1024,1024', '--epochs', '1', '--background-rows', '0', '--importance-rows', '0'],
  },
};
const MODES = {
  sri: { what: 'SRI in the browser, `verifyHash: false`', query: '', verified: 'sri' },
  wasm: { what: 'sha256 in wasm (`?verify=wasm`)', query: '?verify=wasm', verified: 'wasm' },
};

const log = (...a) => console.error('[page-bench]', ...a);

function percentile(xs, p) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]; // nearest rank
}
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const ms = (x) => (x == null || Number.isNaN(x) ? '–' : x.toFixed(1));

/** `trainer serve` on a free port; resolves {url, stop}. */
async function serve(bin, modelsDir) {
  const args = ['serve', '--host', '127.0.0.1', '--port', '0', '--models-dir', modelsDir, '--web-dir', join(ROOT, 'web')];
  const srv = await startProcess(bin, args, { ready: /listening on (http:\/\/127\.0\.0\.1:\d+)/ });
  return { url: srv.match[1], stop: srv.stop };
}

/** One cold load: a fresh context, no HTTP cache; the page's marks once it has predicted. */
async function coldLoad(browser, url, mode) {
  const ctx = await browser.newContext();
  try {
    const page = await ctx.newPage();
    const cdp = await ctx.newCDPSession(page);
    await cdp.send('Network.enable');
    await cdp.send('Network.setCacheDisabled', { cacheDisabled: true });
    await page.goto(url + MODES[mode].query);
    await page.waitForFunction(() => performance.getEntriesByName('first-prediction', 'mark').length > 0, null, { timeout: 60000 });
    const r = await page.evaluate(() => {
      const mark = (n) => performance.getEntriesByName(n, 'mark')[0]?.startTime;
      const res = (re) => performance.getEntriesByType('resource').find((e) => re.test(e.name));
      const bundle = res(/\/bundle$/);
      const wasm = res(/inference_bg\.wasm$/);
      const load = performance.getEntriesByName('from-bundle', 'measure')[0];
      const download = performance.getEntriesByName('bundle-download', 'measure')[0];
      return {
        first: mark('first-prediction'),
        ready: mark('inference-ready'),
        fromBundle: load?.duration,
        verifyHash: load?.detail?.verifyHash,
        bundleFetch: bundle && bundle.responseEnd - bundle.startTime,
        download: download?.duration,
        bundleBytes: bundle?.encodedBodySize,
        wasmFetch: wasm && wasm.responseEnd - wasm.startTime,
        verified: document.body.dataset.verified,
        error: document.getElementById('source-error').hidden ? null : document.getElementById('source-error').textContent,
      };
    });
    if (r.error) throw new Error(`the page failed to load the model: ${r.error}`);
    if (r.verified !== MODES[mode].verified || r.verifyHash !== (mode === 'wasm')) {
      throw new Error(`mode ${mode}: the page says verified=${r.verified}, verifyHash=${r.verifyHash}`);
    }
    return r;
  } finally {
    await ctx.close();
  }
}

async function main() {
  for (const m of opt.models.split(',')) if (!MODELS[m]) throw new Error(`unknown model ${m} (known: ${Object.keys(MODELS).join(', ')})`);
  const chromiumBin = process.env.CHROMIUM_BIN ?? '/usr/bin/chromium';
  if (!existsSync(join(ROOT, 'web/pkg/inference_bg.wasm'))) throw new Error('web/pkg is missing: run scripts/build-wasm.sh');
  const given = process.env.TRAINER_BIN ?? 'target/release/trainer';
  const src = isAbsolute(given) ? given : join(ROOT, given);
  if (!existsSync(src)) throw new Error(`no trainer at ${src}: cargo build --release -p trainer, or set TRAINER_BIN`);
  const tmp = mkdtempSync(join(tmpdir(), 'page-bench-'));
  const bin = join(tmp, 'trainer');
  copyFileSync(src, bin); // a rebuild during the run cannot swap it
  execFileSync('chmod', ['+x', bin]);

  const servers = [];
  let browser;
  let version = '';
  const rows = [];
  try {
    browser = await chromium.launch({
      executablePath: chromiumBin,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    version = browser.version();
    for (const name of opt.models.split(',')) {
      const modelsDir = join(tmp, name);
      log(`training ${name}: ${MODELS[name].what}`);
      const out = execFileSync(bin, ['train', '--models-dir', modelsDir, '--json', ...MODELS[name].args], {
        cwd: ROOT,
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      const { model_dir: modelDir } = JSON.parse(out.trim().split('\n').at(-1));
      const bytes = statSync(join(modelDir, 'model.safetensors')).size;
      const srv = await serve(bin, modelsDir);
      servers.push(srv);
      const samples = { sri: [], wasm: [] };
      for (const mode of ['sri', 'wasm']) await coldLoad(browser, srv.url, mode); // warm-up, discarded
      for (let i = 0; i < RUNS; i++) {
        const order = i % 2 ? ['wasm', 'sri'] : ['sri', 'wasm'];
        for (const mode of order) samples[mode].push(await coldLoad(browser, srv.url, mode));
      }
      log(`${name}: ${RUNS} loads per mode done`);
      for (const mode of ['sri', 'wasm']) {
        const s = samples[mode];
        const col = (k) => s.map((x) => x[k]);
        rows.push({
          model: `${MODELS[name].what} (${(bytes / 1024).toFixed(0)} KiB bundle)`,
          mode: MODES[mode].what,
          firstMedian: median(col('first')),
          firstP90: percentile(col('first'), 90),
          readyMedian: median(col('ready')),
          fromBundle: median(col('fromBundle')),
          download: median(col('download')),
          bundleFetch: median(col('bundleFetch')),
          wasmFetch: median(col('wasmFetch')),
        });
      }
    }
  } finally {
    await browser?.close();
    for (const s of servers) await s.stop();
    if (process.env.KEEP_TMP === '1') log(`kept ${tmp}`);
    else rmSync(tmp, { recursive: true, force: true });
  }

  const head = [
    'model',
    'bundle check',
    'first prediction, median ms',
    'p90 ms',
    'inference-ready, median ms',
    'bundle download, median ms',
    'of which on the wire',
    'Model.fromBundle, median ms',
    '.wasm fetch, median ms',
  ];
  const lines = [
    `Page cold start in headless Chromium ${version} (${cpus().length} cores, ${cpus()[0]?.model ?? 'cpu'}), ${RUNS} loads per row, each in a fresh context with the cache disabled; ` +
      'first prediction and inference-ready from navigation start (performance marks of web/app.js), p90 by nearest rank; ' +
      'bundle download = fetch() to the bytes in hand (the browser\'s integrity check included), on the wire = its Resource Timing (request start to response end).',
    '',
    `| ${head.join(' | ')} |`,
    `|${head.map((_, i) => (i < 2 ? '---' : '---:')).join('|')}|`,
    ...rows.map((r) => `| ${[r.model, r.mode, ms(r.firstMedian), ms(r.firstP90), ms(r.readyMedian), ms(r.download), ms(r.bundleFetch), ms(r.fromBundle), ms(r.wasmFetch)].join(' | ')} |`),
  ];
  const table = `${lines.join('\n')}\n`;
  process.stdout.write(table);
  mkdirSync(join(ROOT, 'bench/out'), { recursive: true });
  writeFileSync(join(ROOT, 'bench/out/wasm-page.md'), table);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
