// The page (web/) in headless Chromium: server models and local files, the form, pasted CSV and
// error messages, checked against the native CLI's predictions. Screenshots go to tests/out/.
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { extname, join, normalize } from 'node:path';
import { after, before, describe, test } from 'node:test';

import { chromium } from 'playwright-core';

import {
  OUT,
  ROOT,
  csvLine,
  nativePredict,
  nativePredictCsv,
  readCsv,
  startProcess,
  tempDir,
  train,
  trainerBin,
} from './helpers.mjs';

const CHROMIUM = process.env.CHROMIUM_BIN ?? '/usr/bin/chromium';
const WEB = join(ROOT, 'web');
const TOL = 1e-5;

/** A static file server for web/ on 127.0.0.1 (the page without any API). */
function serveStatic(root) {
  const types = { '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css', '.wasm': 'application/wasm' };
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
  let server; // trainer serve
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
    esg = train(modelsDir, ['--epochs', '50', '--save-test-rows']);
    diabetes = train(modelsDir, ['--data', 'tests/fixtures/diabetes.csv', '--target', 'progression', '--task', 'regression', '--epochs', '20']);
    iris = train(modelsDir, ['--data', 'tests/fixtures/iris.csv', '--target', 'species', '--epochs', '20']); // the newest
    ({ header, rows } = readCsv(join(esg.model_dir, 'test_rows.csv')));
    server = await startProcess(
      trainerBin(),
      ['serve', '--host', '127.0.0.1', '--port', '0', '--models-dir', modelsDir, '--web-dir', WEB],
      { ready: /listening on (http:\/\/127\.0\.0\.1:\d+)/ },
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
    assert.deepEqual(options, [iris.model_id, diabetes.model_id, esg.model_id]);
    await page.selectOption('#model-select', esg.model_id);
    await liveModel(esg.model_id);
    const names = await page.$$eval('#predict-form [name]', (es) => es.map((e) => e.name));
    assert.equal(names.length, 15);

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
    assert.equal(await page.$$eval('#confusion tbody tr', (trs) => trs.length), 5);
    assert.ok((await page.$$eval('#curves polyline', (ps) => ps.length)) === 2, 'train and val loss curves');
    await shot('page-server-desktop');
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
    await page.fill('#csv-input', 'age,bmi\n50,30\n60,');
    await page.click('#csv-predict');
    const values = await page.$$eval('#csv-table tbody tr', (trs) => trs.map((tr) => Number(tr.dataset.value)));
    assert.equal(values.length, 2);
    await shot('page-regression');
    await page.selectOption('#model-select', esg.model_id);
    await liveModel(esg.model_id);
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
    const names = await page.$$eval('#predict-form [name]', (es) => es.map((e) => e.name));
    const row = featureRow(rows[7], names);
    await fillRow(row);
    assertMatchesNative(await shownPrediction(), nativePredict(modelsDir, esg.model_id, row), 'test row 7 (local file)');
    await shot('page-static-file');
    assert.deepEqual(errors, [], 'no uncaught page errors');
  });
});
