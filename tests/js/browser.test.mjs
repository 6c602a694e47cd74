// The page (web/) in headless Chromium: server models and local files, the form, pasted CSV and
// error messages, checked against the native CLI's predictions; a tuned model's search on the
// card; bundles fetched with Subresource Integrity (and a tampered one refused); a clean load
// (no 4xx/5xx, no console errors) from --web-dir and from the embedded files. Screenshots go to
// tests/out/.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { extname, join, normalize } from 'node:path';
import { after, before, describe, test } from 'node:test';

import { chromium } from 'playwright-core';

import {
  OUT,
  REQUEST_LOG_ENV,
  ROOT,
  csvLine,
  nativePredict,
  nativePredictCsv,
  readCsv,
  servedRequests,
  startProcess,
  tempDir,
  train,
  trainerBin,
  tune,
} from './helpers.mjs';

const CHROMIUM = process.env.CHROMIUM_BIN ?? '/usr/bin/chromium';
const WEB = join(ROOT, 'web');
const TOL = 1e-5;
const SERVE_READY = /listening on (http:\/\/127\.0\.0\.1:\d+)/;

/** The Subresource Integrity metadata of a file: `sha256-` + base64 of its digest. */
const sriOfFile = (path) => `sha256-${createHash('sha256').update(readFileSync(path)).digest('base64')}`;

/** A safetensors bundle with its metadata (`__metadata__.bundle`) rewritten by `edit`; the tensors are untouched. */
function withMetadata(bytes, edit) {
  const n = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + n).toString('utf8'));
  header.__metadata__.bundle = JSON.stringify(edit(JSON.parse(header.__metadata__.bundle)));
  const text = Buffer.from(JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(text.length));
  return Buffer.concat([len, text, bytes.subarray(8 + n)]);
}

/** Records every `fetch` the page makes, with its `integrity` option (in `window.__fetches`). */
const RECORD_FETCHES = () => {
  window.__fetches = [];
  const real = window.fetch;
  window.fetch = function (input, init) {
    window.__fetches.push({ url: String(input?.url ?? input), integrity: init?.integrity ?? null });
    return real.apply(this, arguments);
  };
};

/** A static file server for web/ on 127.0.0.1 (the page without any API). */
function serveStatic(root) {
  const types = { '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css', '.wasm': 'application/wasm', '.svg': 'image/svg+xml' };
  const server = createServer((req, res) => {
    const path = normalize(decodeURIComponent(new URL(req.url, 'http://x').pathname)).replace(/^(\.\.[/\\])+/, '');
    const file = join(root, path.endsWith('/') ? `${path}index.html` : path);
    if (!file.startsWith(root) || !existsSync(file)) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
      return;
    }
    res.writeHead(200, { 'content-type': types[extname(file)] ?? 'application/octet-stream' }).end(readFileSync(file));
  });
  return new Promise((ok) => server.listen(0, '127.0.0.1', () => ok(server)));
}

describe('prediction page in Chromium', () => {
  let tmp;
  let modelsDir;
  let esg; // train summary of the ESG model
  let iris;
  let diabetes; // a regressor
  let tuned; // trainer tune's winner (the oldest model)
  let server; // trainer serve --web-dir web, logging every request
  let embedded; // trainer serve with its embedded page (no --web-dir), logging every request
  let staticServer;
  let browser;
  let page;
  let header;
  let rows;
  const errors = [];

  before(async () => {
    if (!existsSync(join(WEB, 'pkg/inference.js'))) throw new Error('web/pkg is missing: run scripts/build-wasm.sh');
    if (!existsSync(CHROMIUM)) throw new Error(`no Chromium at ${CHROMIUM}: apt-get install chromium (or set CHROMIUM_BIN)`);
    mkdirSync(OUT, { recursive: true });
    tmp = tempDir('browser-test');
    modelsDir = join(tmp.dir, 'models');
    tuned = tune(modelsDir, ['--data', 'tests/fixtures/iris.csv', '--target', 'species', '--trials', '4', '--epochs', '20']);
    esg = train(modelsDir, ['--epochs', '50', '--save-test-rows']);
    diabetes = train(modelsDir, ['--data', 'tests/fixtures/diabetes.csv', '--target', 'progression', '--task', 'regression', '--epochs', '20']);
    iris = train(modelsDir, ['--data', 'tests/fixtures/iris.csv', '--target', 'species', '--epochs', '20']); // the newest
    ({ header, rows } = readCsv(join(esg.model_dir, 'test_rows.csv')));
    server = await startProcess(
      trainerBin(),
      ['serve', '--host', '127.0.0.1', '--port', '0', '--models-dir', modelsDir, '--web-dir', WEB],
      { ready: SERVE_READY, env: REQUEST_LOG_ENV },
    );
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    page.on('pageerror', (e) => errors.push(String(e)));
  });

  after(async () => {
    await browser?.close();
    await server?.stop();
    await embedded?.stop();
    await new Promise((ok) => (staticServer ? staticServer.close(ok) : ok()));
    tmp?.cleanup();
  });

  const shot = (name, fullPage = true) => page.screenshot({ path: join(OUT, `${name}.png`), fullPage });
  const liveModel = (id) => page.waitForSelector(`body[data-model-id="${id}"]`);

  /** Fill the form with one raw test row (text cells; empty = missing). */
  async function fillRow(values) {
    const meta = await page.evaluate(() => [...document.querySelectorAll('#predict-form [name]')].map((e) => [e.name, e.tagName]));
    for (const [i, [name, tag]] of meta.entries()) {
      const sel = `[data-testid="feature-${name}"]`;
      if (tag === 'SELECT') await page.selectOption(sel, values[i] ?? '');
      else await page.fill(sel, values[i] ?? '');
    }
  }

  async function shownPrediction() {
    return page.evaluate(() => {
      const label = document.getElementById('pred-label').dataset.value;
      const bars = [...document.querySelectorAll('#prob-bars .bar')];
      return {
        predicted_label: label,
        classes: bars.map((b) => b.dataset.class),
        probabilities: bars.map((b) => Number(b.dataset.p)),
        confidence: Number(document.getElementById('pred-confidence').dataset.value),
        text: document.getElementById('pred-label').textContent,
      };
    });
  }

  function assertMatchesNative(shown, want, what) {
    assert.equal(shown.predicted_label, want.predicted_label, `${what}: label`);
    assert.equal(shown.text, want.predicted_label, `${what}: shown label text`);
    assert.deepEqual(shown.classes, ['A', 'B', 'C', 'D', 'E']);
    const d = Math.max(...shown.probabilities.map((p, i) => Math.abs(p - want.probabilities[i])));
    assert.ok(d <= TOL, `${what}: max |Δprob| ${d}`);
    assert.ok(Math.abs(shown.confidence - want.confidence) <= TOL, `${what}: confidence`);
  }

  const featureRow = (r, names) => names.map((n) => r[header.indexOf(n)]);

  test('server models: pick one, fill the form, same prediction as trainer predict', async () => {
    await page.goto(server.match[1]);
    await liveModel(iris.model_id); // the newest loads by itself
    const options = await page.$$eval('#model-select option', (os) => os.map((o) => o.value));
    assert.deepEqual(options, [iris.model_id, diabetes.model_id, esg.model_id, tuned.model_id]);
    // Each names its data and target, so models of different data are told apart.
    const labels = await page.$$eval('#model-select option', (os) => os.map((o) => o.textContent));
    assert.match(labels[2], new RegExp(`^${esg.model_id} · embedded:esg_ratings → esg_rating · classification · accuracy`), labels[2]);
    await page.selectOption('#model-select', esg.model_id);
    await liveModel(esg.model_id);
    const names = await page.$$eval('#predict-form [name]', (es) => es.map((e) => e.name));
    assert.equal(names.length, 15);

    // WCAG 2.2 contrast: placeholder text 4.5:1 on its field, the focus ring 3:1 on the page.
    const contrast = await page.evaluate(() => {
      const rgb = (c) => c.match(/\d+(\.\d+)?/g).slice(0, 3).map(Number);
      const lum = (c) => {
        const [r, g, b] = rgb(c).map((v) => v / 255).map((v) => (v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4));
        return 0.2126 * r + 0.7152 * g + 0.0722 * b;
      };
      const ratio = (a, b) => (Math.max(lum(a), lum(b)) + 0.05) / (Math.min(lum(a), lum(b)) + 0.05);
      const input = document.querySelector('#predict-form input');
      // The stylesheet's focus ring (a synthetic focus need not count as visible focus).
      const rule = [...document.styleSheets].flatMap((sh) => [...sh.cssRules]).find((r) => r.selectorText === ':focus-visible');
      const probe = document.createElement('i');
      probe.style.color = rule.style.outlineColor;
      document.body.append(probe);
      const ring = getComputedStyle(probe).color;
      probe.remove();
      return {
        placeholder: ratio(getComputedStyle(input, '::placeholder').color, getComputedStyle(input).backgroundColor),
        ring: ratio(ring, getComputedStyle(document.body).backgroundColor),
      };
    });
    assert.ok(contrast.placeholder >= 4.5, `placeholder contrast ${contrast.placeholder}`);
    assert.ok(contrast.ring >= 3, `focus ring contrast ${contrast.ring}`);

    // Placeholders are the training means; categorical fields offer the vocabulary plus "missing".
    const meta = JSON.parse(readFileSync(join(esg.model_dir, 'metadata.json'), 'utf8'));
    const ph = await page.getAttribute('[data-testid="feature-carbon_intensity"]', 'placeholder');
    assert.ok(Math.abs(Number(ph) - meta.preprocessing.scaler.mean[0]) < 0.01 * Math.abs(meta.preprocessing.scaler.mean[0]));
    const sectors = await page.$$eval('[data-testid="feature-sector"] option', (os) => os.map((o) => o.value));
    assert.deepEqual(sectors, ['', ...meta.preprocessing.features[9].categories]);

    // A test row with a missing cell, then the same row with more cells (numeric + categorical) missing.
    const i = rows.findIndex((r) => r.includes(''));
    const row = featureRow(rows[i], names);
    await fillRow(row);
    assertMatchesNative(await shownPrediction(), nativePredict(modelsDir, esg.model_id, row), `test row ${i}`);
    const sparse = row.map((v, j) => ([1, 5, 10, 11].includes(j) ? '' : v));
    await fillRow(sparse);
    assertMatchesNative(await shownPrediction(), nativePredict(modelsDir, esg.model_id, sparse), 'row with missing cells');

    assert.equal(await page.isVisible('#form-error'), false);
    // Why: one bar per feature, signed and labelled, adding up to the shown probability; the
    // model card shows the global importance.
    const why = await page.$$eval('#why-bars .contrib', (bs) =>
      bs.map((b) => ({ feature: b.dataset.feature, value: Number(b.dataset.value), sign: b.classList.contains('pos') ? 1 : -1, text: b.textContent })),
    );
    assert.equal(why.length, 15);
    for (const b of why) {
      assert.equal(Math.sign(b.value) || 1, b.sign, `${b.feature} bar side`);
      assert.ok(b.text.startsWith(b.feature), b.text);
    }
    const sum = await page.$eval('#why-summary', (e) => ({ base: Number(e.dataset.base), output: Number(e.dataset.output) }));
    const total = sum.base + why.reduce((a, b) => a + b.value, 0);
    assert.ok(Math.abs(total - sum.output) <= 1e-5, `base + Σφ = ${total}, output ${sum.output}`);
    const shownP = await shownPrediction();
    assert.ok(Math.abs(sum.output - shownP.confidence) <= 1e-6, 'explains the predicted class');
    await page.locator('#why').screenshot({ path: join(OUT, 'page-why.png') });
    assert.equal(await page.$$eval('#importance .contrib', (bs) => bs.length), 15);
    // Changing an input updates the explanation live.
    const before = why.map((b) => b.value).join();
    await page.fill('[data-testid="feature-carbon_intensity"]', '5');
    await page.waitForFunction((b) => [...document.querySelectorAll('#why-bars .contrib')].map((e) => Number(e.dataset.value)).join() !== b, before);
    // Typed text that is not a number in this (en-US) locale says so, and is never read as
    // another number (a type=number field read "1,500" as 1500 or 15).
    await page.fill('[data-testid="feature-carbon_intensity"]', '1,500');
    await page.waitForSelector('#form-error', { state: 'visible' });
    assert.match(await page.textContent('#form-error'), /carbon_intensity: "1,500" is not a number/);
    await page.fill('[data-testid="feature-carbon_intensity"]', ' 1.5e1 ');
    await page.waitForSelector('#form-error', { state: 'hidden' });
    assert.equal(await page.isVisible('#form-error'), false);
    assert.equal(await page.$$eval('#confusion tbody tr', (trs) => trs.length), 5);
    assert.ok((await page.$$eval('#curves polyline', (ps) => ps.length)) === 2, 'train and val loss curves');
    await shot('page-server-desktop');
  });

  test('a tuned model\'s card shows the search: summary, one row per trial, the winner marked', async () => {
    const record = JSON.parse(readFileSync(join(tuned.model_dir, 'metadata.json'), 'utf8')).tuning;
    assert.equal(record.trials.length, 4);
    assert.equal(record.best_trial, tuned.best_trial);
    await page.selectOption('#model-select', tuned.model_id);
    await liveModel(tuned.model_id);
    assert.equal(await page.isVisible('#tuning-wrap'), true);

    const tiles = Object.fromEntries(await page.$$eval('#tuning-summary [data-k]', (ds) => ds.map((d) => [d.dataset.k, d.querySelector('dd').textContent])));
    const count = (s) => String(record.trials.filter((t) => t.state === s).length);
    assert.deepEqual(
      { trials: tiles.trials, completed: tiles.completed, pruned: tiles.pruned, failed: tiles.failed, best: tiles.best_trial, stopped: tiles.stopped_by },
      { trials: '4', completed: count('completed'), pruned: count('pruned'), failed: count('failed'), best: `#${record.best_trial}`, stopped: 'all trials ran' },
    );
    assert.equal(Number(tiles.best_val_loss), Number(record.best_val_loss.toPrecision(5)));
    assert.match(tiles.seconds, /^[\d.e-]+ s$/);
    assert.match(await page.textContent('#tuning-options'), /TPE sampler after 10 random trials; successive-halving pruning from epoch 4, η = 3/);
    // Why the winner won, and the lowest-loss trial when the selection rule shipped another.
    assert.ok(record.selected_by);
    assert.ok((await page.textContent('#tuning-options')).includes(`★ marks the winner (${record.selected_by})`));
    assert.equal(tiles.lowest_trial, record.lowest_trial == null ? undefined : `#${record.lowest_trial}`);

    const rows = await page.$$eval('#tuning-table tbody tr', (trs) =>
      trs.map((tr) => ({
        trial: Number(tr.dataset.trial),
        state: tr.dataset.state,
        best: tr.dataset.best === 'true',
        background: getComputedStyle(tr.cells[1]).backgroundColor,
        cells: [...tr.cells].map((c) => c.textContent),
        hidden: tr.querySelector('[data-param="hidden_dims"]')?.textContent,
        optimizer: tr.querySelector('[data-param="optimizer"]')?.textContent,
      })),
    );
    assert.equal(rows.length, 4, 'one row per trial');
    assert.deepEqual(rows.map((r) => r.trial), [0, 1, 2, 3]);
    assert.deepEqual(rows.map((r) => r.state), record.trials.map((t) => t.state));
    assert.ok(rows.some((r) => r.state === 'pruned'), 'this seeded search prunes a trial');
    assert.deepEqual(rows.filter((r) => r.best).map((r) => r.trial), [record.best_trial], 'exactly the winner is marked');
    const winner = rows.find((r) => r.best);
    assert.match(winner.cells[0], /★/);
    for (const r of rows.filter((x) => !x.best)) assert.notEqual(r.background, winner.background, 'the winner\'s row has its own background');
    rows.forEach((r, i) => {
      const t = record.trials[i];
      assert.equal(r.cells[3], String(t.epochs_run), `trial ${i} epochs`);
      assert.equal(Number(r.cells[2]), Number(t.best_val_loss.toPrecision(5)), `trial ${i} best val loss`);
      assert.equal(r.hidden, t.params.hidden_dims.join(','), `trial ${i} hidden dims`);
      assert.equal(r.optimizer, t.params.optimizer, `trial ${i} optimizer`);
    });
    // The winner is this model: its architecture is the winning trial's.
    const meta = JSON.parse(readFileSync(join(tuned.model_dir, 'metadata.json'), 'utf8'));
    assert.deepEqual(meta.architecture.hidden_dims, record.trials[record.best_trial].params.hidden_dims);
    // A long table scrolls in its own box instead of stretching the card.
    const box = await page.$eval('.tuning-scroll', (e) => ({ maxHeight: getComputedStyle(e).maxHeight, overflowY: getComputedStyle(e).overflowY }));
    assert.notEqual(box.maxHeight, 'none');
    assert.equal(box.overflowY, 'auto');
    await page.locator('#model-card').screenshot({ path: join(OUT, 'page-tuning-card.png') });

    // An untuned model has no search to show.
    await page.selectOption('#model-select', esg.model_id);
    await liveModel(esg.model_id);
    assert.equal(await page.isVisible('#tuning-wrap'), false);
    assert.equal(await page.$$eval('#tuning-table tr', (trs) => trs.length), 0);
  });

  test('a long search with a failed trial stays readable: a scroll box with a sticky header', async () => {
    // The tuned bundle with a 40-trial record (trial 5 failed); opened as a local file.
    const file = withMetadata(readFileSync(join(tuned.model_dir, 'model.safetensors')), (m) => {
      const t = m.tuning;
      t.trials = Array.from({ length: 40 }, (_, i) => ({ ...t.trials[i % t.trials.length], number: i }));
      t.trials[5] = { ...t.trials[5], state: 'failed', best_val_loss: null, rung_losses: [], epochs_run: 0, error: 'training diverged' };
      t.options.trials = 40;
      return m;
    });
    const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const p = await ctx.newPage();
    try {
      await p.goto(server.match[1]);
      await p.waitForSelector(`body[data-model-id="${iris.model_id}"]`);
      await p.setInputFiles('#bundle-file', { name: 'tuned-40.safetensors', mimeType: 'application/octet-stream', buffer: file });
      await p.waitForSelector(`body[data-model-id="${tuned.model_id}"]`);
      assert.equal(await p.textContent('#tuning-summary [data-k="failed"] dd'), '1');
      const rows = await p.$$eval('#tuning-table tbody tr', (trs) => trs.map((tr) => ({ state: tr.dataset.state, best: tr.dataset.best === 'true', cells: [...tr.cells].map((c) => c.textContent) })));
      assert.equal(rows.length, 40);
      assert.deepEqual(rows.filter((r) => r.best).map((r) => r.cells[0].replace(/\D/g, '')), [String(tuned.best_trial)]);
      assert.equal(rows[5].state, 'failed');
      assert.deepEqual(rows[5].cells.slice(1, 4), ['failed: training diverged', '—', '0']);
      // The table scrolls inside its box, and its header stays in view when scrolled to the end.
      const box = await p.$eval('.tuning-scroll', (e) => {
        e.scrollTop = e.scrollHeight;
        const th = e.querySelector('thead th').getBoundingClientRect();
        return { scrolls: e.scrollHeight > e.clientHeight + 100, top: e.getBoundingClientRect().top, headerTop: th.top, height: e.clientHeight };
      });
      assert.ok(box.scrolls, 'the 40 rows scroll in the box');
      assert.ok(box.height < 400, `box height ${box.height}px`);
      assert.ok(Math.abs(box.headerTop - box.top) <= 2, `header at ${box.headerTop}, box at ${box.top}`);
      await p.locator('#tuning-wrap').screenshot({ path: join(OUT, 'page-tuning-long.png') });
    } finally {
      await ctx.close();
    }
  });

  test('pasted CSV: 100 rows predicted in the page match trainer predict --input', async () => {
    const csv = [header, ...rows.slice(0, 100)].map(csvLine).join('\n');
    const file = join(tmp.dir, 'rows100.csv');
    writeFileSync(file, `${csv}\n`);
    const want = nativePredictCsv(modelsDir, esg.model_id, file);
    assert.equal(want.length, 100);

    await page.fill('#csv-input', csv);
    await page.click('#csv-predict');
    await page.waitForSelector('#csv-table:not([hidden]) tbody tr');
    const got = await page.$$eval('#csv-table tbody tr', (trs) =>
      trs.map((tr) => ({ label: tr.dataset.label, probs: JSON.parse(tr.dataset.probs) })),
    );
    assert.equal(got.length, 100);
    got.forEach((g, i) => {
      assert.equal(g.label, want[i].predicted_label, `row ${i}`);
      const d = Math.max(...g.probs.map((p, k) => Math.abs(p - want[i].probabilities[k])));
      assert.ok(d <= TOL, `row ${i}: max |Δprob| ${d}`);
    });
    const stats = await page.textContent('#csv-stats');
    assert.match(stats, /^100 rows in .* ms \((.* rows\/s|too fast to time)\)$/);
    await page.locator('#batch').screenshot({ path: join(OUT, 'page-csv.png') });
  });

  test('an unknown category in the CSV shows the core\'s message', async () => {
    const bad = rows.slice(0, 3).map((r) => r.slice());
    bad[1][header.indexOf('sector')] = 'Crypto';
    await page.fill('#csv-input', [header, ...bad].map(csvLine).join('\n'));
    await page.click('#csv-predict');
    await page.waitForSelector('#csv-error:not([hidden])');
    const msg = await page.textContent('#csv-error');
    assert.match(msg, /^Row 2: unknown category "Crypto" for column `sector` \(known: "Consumer", /);
    assert.equal(await page.isVisible('#csv-table'), false);
    await page.locator('#batch').screenshot({ path: join(OUT, 'page-csv-error.png') });
  });

  test('a failed bundle download shows a network error', async () => {
    await page.route('**/bundle', (r) => r.abort());
    await page.selectOption('#model-select', iris.model_id);
    await page.waitForSelector('#source-error:not([hidden])');
    assert.match(await page.textContent('#source-error'), new RegExp(`Could not download model ${iris.model_id}: network error`));
    await page.unroute('**/bundle');
    assert.equal(await page.getAttribute('body', 'data-model-id'), esg.model_id, 'the loaded model stays');
    assert.equal(await page.$eval('#model-select', (s) => s.value), esg.model_id, 'and is the one selected again');
  });

  test('a regression model shows the predicted value', async () => {
    await page.selectOption('#model-select', diabetes.model_id);
    await liveModel(diabetes.model_id);
    const names = await page.$$eval('#predict-form [name]', (es) => es.map((e) => e.name));
    const row = ['59', '2', '32.1', '', '157', '93.2', '38', '4', '4.8598', '87'];
    assert.equal(names.length, row.length);
    await fillRow(row);
    const want = nativePredict(modelsDir, diabetes.model_id, row).predicted_value;
    const got = Number(await page.getAttribute('#pred-label', 'data-value'));
    assert.ok(Math.abs(got - want) <= 1e-5 * Math.abs(want), `${got} vs ${want}`);
    assert.equal(await page.$$eval('#prob-bars .bar', (b) => b.length), 0);
    assert.equal(await page.isVisible('#confusion-wrap'), false);
    // A pasted table names every feature (an absent one would be a typo, not a missing value).
    await page.fill('#csv-input', `${names.join(',')}\n${row.join(',')}\n${row.map((v, j) => (j === 2 ? '' : v)).join(',')}`);
    await page.click('#csv-predict');
    const values = await page.$$eval('#csv-table tbody tr', (trs) => trs.map((tr) => Number(tr.dataset.value)));
    assert.equal(values.length, 2);
    await shot('page-regression');
    await page.selectOption('#model-select', esg.model_id);
    await liveModel(esg.model_id);
  });

  test('server bundles: fetched with Subresource Integrity, loaded without the wasm hash; ?verify=wasm hashes in wasm', async () => {
    const ctx = await browser.newContext();
    await ctx.addInitScript(RECORD_FETCHES);
    const p = await ctx.newPage();
    const pageErrors = [];
    p.on('pageerror', (e) => pageErrors.push(String(e)));
    const bundleFetches = () => p.evaluate(() => window.__fetches.filter((f) => f.url.endsWith('/bundle')));
    const loadInfo = () =>
      p.evaluate(() => ({
        verified: document.body.dataset.verified,
        status: document.getElementById('status').textContent,
        marks: Object.fromEntries(['inference-ready', 'first-prediction'].map((n) => [n, performance.getEntriesByName(n, 'mark').map((m) => m.startTime)])),
        fromBundle: performance.getEntriesByName('from-bundle', 'measure').map((m) => m.detail),
      }));
    try {
      await p.goto(server.match[1]);
      await p.waitForSelector(`body[data-model-id="${iris.model_id}"]`);
      await p.waitForSelector('#pred-label:not(:empty)');
      const sri = sriOfFile(join(iris.model_dir, 'model.safetensors'));
      assert.deepEqual(await bundleFetches(), [{ url: `/api/ml/models/${iris.model_id}/bundle`, integrity: sri }]);
      let info = await loadInfo();
      assert.equal(info.verified, 'sri');
      assert.match(info.status, /checked by the browser \(Subresource Integrity\)/);
      assert.deepEqual(info.fromBundle, [{ verifyHash: false }]);
      const [ready] = info.marks['inference-ready'];
      const [first] = info.marks['first-prediction'];
      assert.equal(info.marks['inference-ready'].length, 1);
      assert.ok(ready > 0 && first >= ready, `marks: inference-ready ${ready}, first-prediction ${first}`);

      // Picking another model checks its own digest.
      await p.selectOption('#model-select', esg.model_id);
      await p.waitForSelector(`body[data-model-id="${esg.model_id}"]`);
      assert.equal((await bundleFetches())[1].integrity, sriOfFile(join(esg.model_dir, 'model.safetensors')));
      info = await loadInfo();
      assert.equal(info.marks['first-prediction'].length, 1, 'first-prediction is marked once');

      await p.goto(`${server.match[1]}/?verify=wasm`);
      await p.waitForSelector(`body[data-model-id="${iris.model_id}"]`);
      await p.waitForSelector('#pred-label:not(:empty)');
      assert.deepEqual(await bundleFetches(), [{ url: `/api/ml/models/${iris.model_id}/bundle`, integrity: null }]);
      info = await loadInfo();
      assert.equal(info.verified, 'wasm');
      assert.deepEqual(info.fromBundle, [{ verifyHash: true }]);
      assert.match(info.status, /weights hash checked in wasm/);
      assert.deepEqual(pageErrors, []);
    } finally {
      await ctx.close();
    }
  });

  test('an unloadable newest model is listed disabled and skipped; probability tracks share one start', async () => {
    const ctx = await browser.newContext();
    const p = await ctx.newPage();
    // The server's real list with its newest model marked unloadable, as a corrupt bundle is.
    await p.route('**/api/ml/models', async (route) => {
      const response = await route.fetch();
      const list = await response.json();
      assert.equal(list[0].model_id, iris.model_id);
      list[0] = { ...list[0], status: 'unloadable', error: 'corrupt bundle' };
      await route.fulfill({ response, json: list });
    });
    try {
      await p.goto(server.match[1]);
      await p.waitForSelector(`body[data-model-id="${diabetes.model_id}"]`);
      const option = await p.$eval(`#model-select option[value="${iris.model_id}"]`, (o) => ({ disabled: o.disabled, text: o.textContent, title: o.title }));
      assert.deepEqual(option, { disabled: true, text: `${iris.model_id} · unloadable`, title: 'corrupt bundle' });
      assert.equal(await p.inputValue('#model-select'), diabetes.model_id, 'the selection shows the model in use');
      // Bars of one chart start at one x (their lengths compare), whatever their labels.
      await p.selectOption('#model-select', tuned.model_id);
      await p.waitForSelector(`body[data-model-id="${tuned.model_id}"]`);
      await p.waitForSelector('#prob-bars .bar-track');
      const starts = await p.$$eval('#prob-bars .bar-track', (ts) => ts.map((t) => Math.round(t.getBoundingClientRect().x)));
      assert.equal(starts.length, 3);
      assert.equal(new Set(starts).size, 1, `track starts ${starts}`);
    } finally {
      await ctx.close();
    }
  });

  test('a tampered bundle fails the browser\'s integrity check: a clear error, never a prediction', async () => {
    const ctx = await browser.newContext();
    const p = await ctx.newPage();
    const consoleErrors = [];
    p.on('console', (m) => m.type() === 'error' && consoleErrors.push(m.text()));
    let tampered = 0;
    // The server's real answer with one byte of the weights flipped.
    await p.route('**/api/ml/models/*/bundle', async (route) => {
      const response = await route.fetch();
      const body = Buffer.from(await response.body());
      body[body.length - 3] ^= 0x01;
      tampered++;
      await route.fulfill({ response, body });
    });
    try {
      await p.goto(server.match[1]);
      await p.waitForSelector('#source-error:not([hidden])');
      const msg = await p.textContent('#source-error');
      assert.match(msg, new RegExp(`^Could not download model ${iris.model_id}: integrity check failed: the server lists sha256 [0-9a-f]{12}… for the bundle, but its bytes hash to [0-9a-f]{12}…; the browser refused the bytes \\(Subresource Integrity\\), nothing was loaded\\.$`));
      const listed = createHash('sha256').update(readFileSync(join(iris.model_dir, 'model.safetensors'))).digest('hex');
      assert.ok(msg.includes(listed.slice(0, 12)), 'names the listed digest');
      assert.ok(tampered >= 1);
      assert.ok(consoleErrors.some((e) => /integrity/i.test(e)), `Chromium reports the SRI failure: ${consoleErrors.join(' | ')}`);
      const state = await p.evaluate(() => ({
        modelId: document.body.dataset.modelId ?? null,
        uiHidden: document.getElementById('model-ui').hidden,
        label: document.getElementById('pred-label').textContent,
        marks: performance.getEntriesByType('mark').map((m) => m.name),
        loads: performance.getEntriesByName('from-bundle', 'measure').length,
      }));
      assert.deepEqual(state, { modelId: null, uiHidden: true, label: '', marks: [], loads: 0 }, 'nothing was loaded or predicted');
      await p.screenshot({ path: join(OUT, 'page-integrity-error.png') });
    } finally {
      await ctx.close();
    }
  });

  /**
   * Load the page at `url` in a fresh context until it predicts, and collect what went wrong:
   * responses >= 400 the page saw, failed requests, console errors and uncaught errors, and the
   * requests `srv` answered meanwhile (its log: also those Chromium makes on its own, like
   * /favicon.ico, which Playwright does not report).
   */
  async function cleanLoad(srv, url) {
    const ctx = await browser.newContext();
    const p = await ctx.newPage();
    const seen = { responses: [], failed: [], console: [], pageErrors: [] };
    p.on('response', (r) => seen.responses.push({ path: new URL(r.url()).pathname, status: r.status(), type: r.headers()['content-type'] }));
    p.on('requestfailed', (r) => seen.failed.push(`${r.url()}: ${r.failure()?.errorText}`));
    p.on('console', (m) => m.type() === 'error' && seen.console.push(m.text()));
    p.on('pageerror', (e) => seen.pageErrors.push(String(e)));
    const logFrom = srv.output().length;
    try {
      await p.goto(url);
      await p.waitForSelector('body[data-model-id]');
      await p.waitForSelector('#pred-label:not(:empty)');
      seen.iconLink = await p.$eval('link[rel="icon"]', (l) => ({ href: new URL(l.href).pathname, type: l.type }));
      await p.waitForLoadState('networkidle');
      // Chromium asks for the icon after the load event: give it a moment.
      for (let i = 0; i < 50 && !seen.responses.some((r) => r.path === seen.iconLink.href); i++) await p.waitForTimeout(20);
    } finally {
      await ctx.close();
    }
    // The server logs a request once it has answered it: wait for the icon's line.
    let served = [];
    for (let i = 0; i < 50; i++) {
      served = servedRequests(srv.output().slice(logFrom));
      if (served.some((r) => r.path === seen.iconLink.href)) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    seen.icon = seen.responses.find((r) => r.path === seen.iconLink.href);
    return { ...seen, served };
  }

  function assertClean(got, what) {
    assert.deepEqual(got.responses.filter((r) => r.status >= 400), [], `${what}: responses the page saw`);
    assert.deepEqual(got.served.filter((r) => r.status >= 400), [], `${what}: requests the server answered`);
    assert.deepEqual(got.failed, [], `${what}: failed requests`);
    assert.deepEqual(got.console, [], `${what}: console errors`);
    assert.deepEqual(got.pageErrors, [], `${what}: uncaught errors`);
    const paths = got.served.map((r) => r.path);
    for (const want of ['/', '/app.js', '/style.css', '/pkg/inference.js', '/pkg/inference_bg.wasm', '/api/ml/models', '/favicon.svg']) {
      assert.ok(paths.includes(want), `${what}: the server answered ${want} (it answered ${paths.join(' ')})`);
    }
    assert.ok(paths.some((x) => x.endsWith('/bundle')), `${what}: a bundle was downloaded`);
    assert.deepEqual(got.iconLink, { href: '/favicon.svg', type: 'image/svg+xml' });
    assert.ok(got.icon, `${what}: the page loaded its icon`);
    assert.equal(got.icon.status, 200);
    assert.match(got.icon.type, /^image\/svg\+xml/);
  }

  test('a clean load from --web-dir web: no 4xx/5xx, favicon, no console errors', async () => {
    assertClean(await cleanLoad(server, server.match[1]), '--web-dir web');
  });

  test('a clean load from the embedded page (no --web-dir): no 4xx/5xx, favicon, no console errors', async (t) => {
    // From a directory without web/, so only the files compiled into the binary can answer.
    embedded = await startProcess(trainerBin(), ['serve', '--host', '127.0.0.1', '--port', '0', '--models-dir', modelsDir], {
      ready: SERVE_READY,
      env: REQUEST_LOG_ENV,
      cwd: tmp.dir,
    });
    const origin = embedded.match[1];
    const stale = [];
    for (const f of ['index.html', 'app.js', 'style.css', 'favicon.svg']) {
      const served = Buffer.from(await (await fetch(`${origin}/${f}`)).arrayBuffer());
      if (!served.equals(readFileSync(join(WEB, f)))) stale.push(f);
    }
    // The binary embeds web/ as it was when it was built; only the clean load is checked here.
    if (stale.length) t.diagnostic(`the embedded page is older than web/ (${stale.join(', ')}): rebuild trainer to embed it`);
    assertClean(await cleanLoad(embedded, origin), 'embedded page');
  });

  test('GET /favicon.ico answers the icon (browsers ask for it when a page names none)', async () => {
    for (const origin of [server.match[1], embedded.match[1]]) {
      const r = await fetch(`${origin}/favicon.ico`);
      assert.equal(r.status, 200, `${origin}/favicon.ico`);
      assert.match(r.headers.get('content-type') ?? '', /^image\//);
    }
  });

  test('phone-sized viewport', async () => {
    const phone = await browser.newPage({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true });
    await phone.goto(server.match[1]);
    await phone.waitForSelector(`body[data-model-id="${iris.model_id}"]`);
    await phone.selectOption('#model-select', esg.model_id);
    await phone.waitForSelector(`body[data-model-id="${esg.model_id}"]`);
    const overflow = await phone.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `page is ${overflow}px wider than the phone`);
    await phone.screenshot({ path: join(OUT, 'page-phone.png'), fullPage: true });
    // The tuning table scrolls in its box rather than widening the page.
    await phone.selectOption('#model-select', tuned.model_id);
    await phone.waitForSelector(`body[data-model-id="${tuned.model_id}"] #tuning-wrap:not([hidden])`);
    const tunedOverflow = await phone.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(tunedOverflow <= 0, `with the tuning table the page is ${tunedOverflow}px wider than the phone`);
    // ... and keeps each cell on one line (its box scrolls sideways) instead of squeezing them.
    const wrapped = await phone.$$eval('#tuning-table th, #tuning-table td:not(.state)', (cells) =>
      cells
        .filter((c) => {
          // The lines its visible text takes (screen-reader-only text is positioned apart).
          const tops = new Set();
          const walk = document.createTreeWalker(c, NodeFilter.SHOW_TEXT);
          for (let t = walk.nextNode(); t; t = walk.nextNode()) {
            if (t.parentElement.closest('.sr-only')) continue;
            const r = document.createRange();
            r.selectNodeContents(t);
            for (const x of r.getClientRects()) tops.add(Math.round(x.top));
          }
          return tops.size > 1;
        })
        .map((c) => c.textContent),
    );
    assert.deepEqual(wrapped, [], 'tuning cells wrapped on a phone');
    await phone.locator('#tuning-wrap').screenshot({ path: join(OUT, 'page-phone-tuning.png') });
    await phone.close();
  });

  test('static copy without the API: note, local file, bad file', async () => {
    await server.stop();
    staticServer = await serveStatic(WEB);
    const url = `http://127.0.0.1:${staticServer.address().port}/`;
    await page.goto(url);
    await page.waitForSelector('#models-note:not([hidden])');
    assert.match(await page.textContent('#models-note'), /No model server here: .*404.*open a model\.safetensors file instead/);

    // A bad file first: the message names the problem.
    await page.setInputFiles('#bundle-file', { name: 'notes.safetensors', mimeType: 'application/octet-stream', buffer: Buffer.from('not a model') });
    await page.waitForSelector('#source-error:not([hidden])');
    assert.match(await page.textContent('#source-error'), /The file notes\.safetensors is not a usable model bundle: not a valid safetensors file/);
    await shot('page-static-bad-file', false);

    await page.setInputFiles('#bundle-file', join(esg.model_dir, 'model.safetensors'));
    await liveModel(esg.model_id);
    assert.equal(await page.isVisible('#source-error'), false);
    assert.equal(await page.getAttribute('body', 'data-verified'), 'wasm', 'a local file is hashed in wasm');
    const names = await page.$$eval('#predict-form [name]', (es) => es.map((e) => e.name));
    const row = featureRow(rows[7], names);
    await fillRow(row);
    assertMatchesNative(await shownPrediction(), nativePredict(modelsDir, esg.model_id, row), 'test row 7 (local file)');
    await shot('page-static-file');
    assert.deepEqual(errors, [], 'no uncaught page errors');
  });
});
