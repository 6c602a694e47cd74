// The prediction page: loads a model bundle (from the server's API or a local file) into the
// wasm inference core and predicts in the page. No framework, no bundler.
//
// `?api=URL` points the page at another server's `/api/ml` (default: this origin's).
// `?verify=wasm` makes server bundles skip Subresource Integrity and have the wasm core hash
// the weights instead, as local files always do (the other arm of bench/wasm/page.mjs).
//
// Performance marks (for bench/wasm/page.mjs): `inference-ready` when the first model is
// loaded, `first-prediction` when the first prediction is on the page; measures
// `bundle-download` (fetch to bytes in hand, the integrity check included) and `from-bundle`
// (`Model.fromBundle`) span each server download and each load.

const QUERY = new URLSearchParams(location.search);
const API = QUERY.get('api') ?? '/api/ml';
const VERIFY_IN_WASM = QUERY.get('verify') === 'wasm';
/** Pages of the model list read at most (100 models each): a bound, not a limit anyone meets. */
const MAX_MODEL_PAGES = 100;
const $ = (id) => document.getElementById(id);

let wasm; // @trainer/inference's browser entry (web/pkg/inference.js, copied by scripts/pack.sh)
let model; // the loaded wasm Model
let meta; // its metadata
let loadSeq = 0; // newer loads win over slower older ones
let listed = new Map(); // model_id → its entry in the server's list (bundle_sha256, …)

// ---------- small helpers ----------

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) if (v != null) e.setAttribute(k, v);
  e.append(...children);
  return e;
}

const SVG_NS = 'http://www.w3.org/2000/svg';
function svg(tag, attrs = {}, ...children) {
  const e = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  e.append(...children);
  return e;
}

/** A number for people: 5 significant digits, no trailing zeros. */
const fmt = (x) => (Number.isFinite(x) ? String(Number(x.toPrecision(5))) : String(x));
const pct = (p) => `${(p * 100).toFixed(1)}%`;

function setStatus(text) {
  $('status').textContent = text;
}

function showError(id, message) {
  const e = $(id);
  e.textContent = message;
  e.hidden = !message;
}

/** The `message` of the API's `{"error","message"}` body, or the HTTP status. */
async function httpError(r) {
  try {
    const body = await r.json();
    if (body?.message) return `${body.message} (HTTP ${r.status})`;
  } catch {
    /* not JSON */
  }
  return `HTTP ${r.status} ${r.statusText}`.trim();
}

const networkMessage = (e) => (e instanceof TypeError ? `network error (${e.message})` : e.message);

/** Mark `name` once (the first model, the first prediction). */
function markOnce(name) {
  if (!performance.getEntriesByName(name, 'mark').length) performance.mark(name);
}

/** The Subresource Integrity metadata for a hex sha256 (`sha256-` + base64 of its 32 bytes), or null. */
function sriOf(hex) {
  if (typeof hex !== 'string' || !/^[0-9a-f]{64}$/i.test(hex)) return null;
  const bytes = hex.match(/../g).map((b) => parseInt(b, 16));
  return `sha256-${btoa(String.fromCharCode(...bytes))}`;
}

const toHex = (buf) => [...new Uint8Array(buf)].map((b) => b.toString(16).padStart(2, '0')).join('');

/**
 * Why a fetch with `integrity` failed: browsers reject it with the same bare TypeError whether
 * the bytes did not match, the server answered an error, or the network failed. Fetch again
 * without integrity, only to tell which (the bytes are dropped, never loaded).
 */
async function whyIntegrityFetchFailed(url, hex, error) {
  let r;
  try {
    r = await fetch(url, { cache: 'no-store' });
  } catch {
    return networkMessage(error);
  }
  if (!r.ok) return await httpError(r);
  let got = null;
  try {
    const bytes = await r.arrayBuffer();
    got = crypto.subtle ? toHex(await crypto.subtle.digest('SHA-256', bytes)) : null;
  } catch {
    return networkMessage(error);
  }
  if (got === hex.toLowerCase()) return networkMessage(error); // the bytes were right: a transient failure
  const sent = got ? `, but its bytes hash to ${got.slice(0, 12)}…` : '';
  return (
    `integrity check failed: the server lists sha256 ${hex.slice(0, 12)}… for the bundle${sent}; ` +
    'the browser refused the bytes (Subresource Integrity), nothing was loaded'
  );
}

// ---------- loading ----------

async function start() {
  try {
    wasm = await import('./pkg/inference.js');
    await wasm.init(); // fetches pkg/inference_bg.wasm
  } catch (e) {
    setStatus('');
    showError(
      'source-error',
      `The WebAssembly inference build could not be loaded (${e.message}). ` +
        'Build it with scripts/build-wasm.sh, which packages @trainer/inference and copies its browser entry to web/pkg/.',
    );
    return;
  }
  setupFileInput();
  await listModels();
}

async function listModels() {
  const sel = $('model-select');
  const list = [];
  try {
    // Every page (the server pages by 100, newest first), following `x-next-cursor`.
    for (let cursor = null, pages = 0; pages < MAX_MODEL_PAGES; pages++) {
      const url = `${API}/models${cursor ? `?cursor=${encodeURIComponent(cursor)}` : ''}`;
      const r = await fetch(url, { headers: { accept: 'application/json' } });
      if (!r.ok) throw new Error(`GET ${API}/models answered ${await httpError(r)}`);
      if (!(r.headers.get('content-type') ?? '').includes('json')) {
        throw new Error(`GET ${API}/models did not answer JSON`);
      }
      list.push(...(await r.json()));
      cursor = r.headers.get('x-next-cursor');
      if (!cursor) break;
    }
  } catch (e) {
    sel.replaceChildren(new Option('No model server', ''));
    const note = $('models-note');
    note.textContent =
      `No model server here: ${networkMessage(e)}. ` +
      'That is fine for a static copy of this page: open a model.safetensors file instead.';
    note.hidden = false;
    setStatus('Open a model.safetensors file to start.');
    return;
  }
  if (!list.length) {
    sel.replaceChildren(new Option('No saved models', ''));
    setStatus('The server has no models yet: train one (trainer train), or open a file.');
    return;
  }
  const label = (m) => {
    const t = m.test_metrics ?? {};
    const score = t.accuracy != null ? `accuracy ${pct(t.accuracy)}` : t.r2 != null ? `R² ${fmt(t.r2)}` : '';
    // Which data and target: ids alone do not tell two models apart.
    const data = m.dataset ? `${m.dataset.split('/').pop()}${m.target_column ? ` → ${m.target_column}` : ''}` : '';
    return [m.model_id, data, m.task_type, score].filter(Boolean).join(' · ');
  };
  listed = new Map(list.map((m) => [m.model_id, m]));
  // A model the server cannot load is listed, disabled, with the reason as its tooltip.
  const usable = (m) => (m.status ?? 'ok') === 'ok';
  sel.replaceChildren(
    ...list.map((m) => {
      const o = new Option(usable(m) ? label(m) : `${m.model_id} · unloadable`, m.model_id);
      if (!usable(m)) {
        o.disabled = true;
        o.title = m.error ?? 'the server cannot load this model';
      }
      return o;
    }),
  );
  sel.disabled = false;
  sel.addEventListener('change', () => sel.value && loadFromServer(sel.value));
  const newest = list.find(usable);
  if (!newest) {
    setStatus('No model on the server loads: see the list, train a new one, or open a file.');
    return;
  }
  sel.value = newest.model_id;
  await loadFromServer(newest.model_id); // the newest loadable one
}

/** After a failed load: say which model is still live, and select it again in the list. */
function keepLiveModel() {
  setStatus(model ? `Still using ${meta.model_id}.` : '');
  const sel = $('model-select');
  sel.value = model && listed.has(meta.model_id) ? meta.model_id : '';
}

async function loadFromServer(id) {
  const seq = ++loadSeq;
  setStatus(`Downloading ${id}…`);
  // The list gives the file's sha256: the browser checks the bytes against it natively
  // (Subresource Integrity), so the wasm core need not hash the weights again.
  const hex = VERIFY_IN_WASM ? null : listed.get(id)?.bundle_sha256;
  const integrity = sriOf(hex);
  const url = `${API}/models/${encodeURIComponent(id)}/bundle`;
  let bytes;
  try {
    const t0 = performance.now();
    const r = await fetch(url, integrity ? { integrity } : {});
    if (!r.ok) throw new Error(await httpError(r));
    bytes = new Uint8Array(await r.arrayBuffer());
    performance.measure('bundle-download', { start: t0, end: performance.now(), detail: { integrity: !!integrity } });
  } catch (e) {
    const why = integrity && e instanceof TypeError ? await whyIntegrityFetchFailed(url, hex, e) : networkMessage(e);
    if (seq !== loadSeq) return;
    keepLiveModel();
    showError('source-error', `Could not download model ${id}: ${why}.`);
    return;
  }
  if (seq === loadSeq) useBundle(bytes, 'the server', `Model ${id} from the server`, { verifyHash: !integrity });
}

async function loadFile(file) {
  const seq = ++loadSeq;
  setStatus(`Reading ${file.name}…`);
  let bytes;
  try {
    bytes = new Uint8Array(await file.arrayBuffer());
  } catch (e) {
    showError('source-error', `Could not read ${file.name}: ${e.message}`);
    return;
  }
  if (seq === loadSeq) useBundle(bytes, file.name, `The file ${file.name}`, { verifyHash: true });
}

/**
 * Load bundle bytes; `from` and `what` name the source in messages. `verifyHash: false` only
 * for bytes the browser has checked against the server's sha256 (Subresource Integrity).
 */
function useBundle(bytes, from, what, { verifyHash }) {
  let m;
  try {
    const t0 = performance.now();
    m = wasm.Model.fromBundle(bytes, { verifyHash });
    performance.measure('from-bundle', { start: t0, end: performance.now(), detail: { verifyHash } });
  } catch (e) {
    keepLiveModel();
    showError('source-error', `${what} is not a usable model bundle: ${e.message}`);
    return;
  }
  model?.free();
  model = m;
  meta = m.metadata();
  showError('source-error', '');
  renderForm();
  renderCard();
  $('csv-table').hidden = true;
  $('csv-stats').textContent = '';
  showError('csv-error', '');
  $('model-ui').hidden = false;
  document.body.dataset.modelId = meta.model_id; // for tests: which model is live
  document.body.dataset.verified = verifyHash ? 'wasm' : 'sri'; // who checked the bytes' hash
  const checked = verifyHash ? 'weights hash checked in wasm' : 'bytes checked by the browser (Subresource Integrity)';
  setStatus(`Loaded ${meta.model_id} from ${from}: ${meta.task_type}, ${model.numFeatures} features; ${checked}.`);
  markOnce('inference-ready');
  predictForm();
}

function setupFileInput() {
  const input = $('bundle-file');
  input.addEventListener('change', () => input.files[0] && loadFile(input.files[0]));
  const zone = $('dropzone');
  document.addEventListener('dragover', (e) => {
    e.preventDefault();
    zone.classList.add('over');
  });
  document.addEventListener('dragleave', (e) => e.relatedTarget || zone.classList.remove('over'));
  document.addEventListener('drop', (e) => {
    e.preventDefault();
    zone.classList.remove('over');
    const file = e.dataTransfer?.files[0];
    if (file) loadFile(file);
  });
}

// ---------- one row ----------

function renderForm() {
  const form = $('predict-form');
  const { features, scaler } = meta.preprocessing;
  form.replaceChildren(
    ...features.map((f, i) => {
      const id = `feature-${i}`;
      const common = { id, name: f.name, 'data-testid': `feature-${f.name}` };
      const fill = f.fill_value == null ? 'no fill value: required' : `missing fills ${f.kind === 'numeric' ? fmt(f.fill_value) : f.fill_value}`;
      let input;
      if (f.kind === 'categorical') {
        input = el('select', { ...common, title: `empty = missing (${fill})` });
        input.append(new Option('(missing)', ''), ...f.categories.map((c) => new Option(c, c)));
      } else {
        // Text, not type=number: a number field silently reads "1,5" as 15 in some locales and
        // hides what was typed; parseNumber reads it or says why not.
        input = el('input', {
          ...common,
          type: 'text',
          inputmode: 'decimal',
          autocomplete: 'off',
          spellcheck: 'false',
          placeholder: fmt(scaler.mean[i]),
          title: `training mean ${fmt(scaler.mean[i])}; empty = missing (${fill})`,
        });
      }
      return el('div', { class: 'field' }, el('label', { for: id }, f.name), input);
    }),
  );
  form.oninput = predictForm;
  form.onchange = predictForm;
  form.onsubmit = (e) => e.preventDefault();
}

/** The decimal separator of the browser's locale: `.` or `,`. */
const LOCALE_DECIMAL =
  new Intl.NumberFormat(navigator.language).formatToParts(1.5).find((p) => p.type === 'decimal')?.value ?? '.';
const NUMBER_TEXT = /^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i;

/**
 * A typed number: JS notation (`1.5`, `-2e3`), or with the locale's decimal comma (`1,5`)
 * where the locale writes one. Anything else (`1,500` in a point locale, `12abc`) is an
 * error naming the field, never a guess.
 */
function parseNumber(name, text) {
  const t = text.trim();
  if (NUMBER_TEXT.test(t)) return Number(t);
  if (LOCALE_DECIMAL === ',' && !t.includes('.') && NUMBER_TEXT.test(t.replace(',', '.'))) return Number(t.replace(',', '.'));
  throw new Error(`${name}: "${text}" is not a number (write it like 1.5 or -2e3)`);
}

function readForm() {
  return [...$('predict-form').elements].map((input) => {
    if (input.value.trim() === '') return null;
    return input.tagName === 'SELECT' ? input.value : parseNumber(input.name, input.value);
  });
}

function predictForm() {
  const result = $('result');
  try {
    const row = readForm();
    renderResult(model.predict(row));
    markOnce('first-prediction');
    renderWhy(row);
    result.classList.remove('stale');
    showError('form-error', '');
  } catch (e) {
    result.classList.add('stale');
    $('why').hidden = true;
    showError('form-error', e.message);
  }
}

/** One contribution row: "name = value", a bar left (negative) or right (positive) of the axis, the number. */
function contribRow(name, shown, value, widest, signed = true) {
  const pct = widest > 0 ? (Math.abs(value) / widest) * (signed ? 50 : 100) : 0;
  const sign = value >= 0 ? 'pos' : 'neg';
  const label = el('span', { class: 'name', title: `${name} = ${shown}` }, name, shown === '' ? '' : el('span', { class: 'v' }, ` = ${shown}`));
  const text = `${signed && value >= 0 ? '+' : ''}${Number(value.toPrecision(3))}`;
  return el(
    'div',
    { class: `contrib ${sign}`, role: 'listitem', 'data-feature': name, 'data-value': value, 'aria-label': `${name}: ${text}` },
    label,
    el('span', { class: 'track', 'aria-hidden': 'true' }, el('span', { class: 'fill', style: `width:${pct}%` })),
    el('span', { class: 'num' }, text),
  );
}

/** The form row's Shapley values, largest first, computed in the page by the wasm core. */
function renderWhy(row) {
  const e = model.explain(row);
  const what = e.label != null ? `P(${e.label})` : `predicted ${meta.dataset.target_column}`;
  const names = model.featureNames;
  const values = names.map((n) => e.values[n]);
  const widest = Math.max(...values.map(Math.abs));
  const order = names.map((_, j) => j).sort((a, b) => Math.abs(values[b]) - Math.abs(values[a]));
  const summary = $('why-summary');
  const source = e.background === 'stored' ? `${e.background_rows} training rows` : 'the fill values (this bundle stores no background)';
  summary.textContent = `${what} = ${fmt(e.output)}: the average over ${source} is ${fmt(e.base_value)}; each feature moves it by its bar (${e.method} Shapley values; they add up exactly).`;
  Object.assign(summary.dataset, { base: e.base_value, output: e.output, method: e.method });
  $('why-bars').replaceChildren(...order.map((j) => contribRow(names[j], row[j] == null ? 'missing' : String(row[j]), values[j], widest)));
  $('why').hidden = false;
}

function renderResult(p) {
  const label = $('pred-label');
  const conf = $('pred-confidence');
  const bars = $('prob-bars');
  if (p.predicted_value !== undefined) {
    label.textContent = fmt(p.predicted_value);
    label.dataset.value = p.predicted_value;
    conf.textContent = `predicted ${meta.dataset.target_column}`;
    bars.replaceChildren();
    return;
  }
  label.textContent = p.predicted_label;
  label.dataset.value = p.predicted_label;
  conf.textContent = `${pct(p.confidence)} confidence`;
  conf.dataset.value = p.confidence;
  const classes = meta.classes ?? p.probabilities.map((_, i) => String(i));
  bars.replaceChildren(
    ...p.probabilities.map((prob, i) =>
      el(
        'div',
        {
          class: i === p.predicted_class ? 'bar best' : 'bar',
          'data-testid': `prob-${classes[i]}`,
          'data-class': classes[i],
          'data-p': prob,
        },
        el('span', { class: 'bar-label' }, classes[i]),
        el('span', { class: 'bar-track', 'aria-hidden': 'true' }, el('span', { class: 'bar-fill', style: `width:${prob * 100}%` })),
        el('span', { class: 'bar-value' }, pct(prob)),
      ),
    ),
  );
}

// ---------- many rows ----------

/** RFC 4180 CSV, for showing the pasted target column beside the predictions (the core reads the features). */
function parseCsv(text) {
  const rows = [];
  let row = [];
  let field = '';
  let quoted = false;
  text = text.replace(/^\uFEFF/, '');
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
      if (row.length > 1 || row[0] !== '') rows.push(row);
      row = [];
      field = '';
    } else field += c;
  }
  if (quoted) throw new Error('unterminated quoted field');
  row.push(field);
  if (row.length > 1 || row[0] !== '') rows.push(row);
  return rows;
}

const MAX_SHOWN = 1000;

function predictCsv() {
  const table = $('csv-table');
  const stats = $('csv-stats');
  table.hidden = true;
  stats.textContent = '';
  showError('csv-error', '');
  const text = $('csv-input').value;
  let preds;
  const t0 = performance.now();
  try {
    // The core reads the CSV and matches its columns to features by name, as the CLI and MLflow's text/csv do.
    preds = model.predictCsv(text);
  } catch (e) {
    // Errors name their data row as a field (from 0); people count data rows from 1.
    showError('csv-error', e.row != null ? `Row ${e.row + 1}: ${e.message.replace(/^row \d+: /, '')}` : e.message);
    return;
  }
  const ms = performance.now() - t0;
  if (!preds.length) {
    showError('csv-error', 'Paste a header row and at least one data row.');
    return;
  }
  // The target column, when pasted, is shown beside the predictions (display only).
  let truth = null;
  try {
    const rows = parseCsv(text);
    const at = rows[0].map((h) => h.trim()).indexOf(meta.dataset.target_column);
    if (at >= 0 && rows.length - 1 === preds.length) truth = rows.slice(1).map((r) => r[at]);
  } catch {
    truth = null;
  }
  renderTable(preds, truth);
  const rate = ms > 0 ? `${Math.round(preds.length / (ms / 1000)).toLocaleString('en')} rows/s` : 'too fast to time';
  stats.textContent = `${preds.length} rows in ${ms.toFixed(1)} ms (${rate})`;
  stats.dataset.rows = preds.length;
}

function renderTable(preds, truth) {
  const table = $('csv-table');
  const classes = meta.classes;
  const probCols = classes && classes.length <= 8 ? classes : [];
  const head = ['#', ...(truth ? [`actual ${meta.dataset.target_column}`] : [])];
  head.push(...(classes ? ['predicted', 'confidence', ...probCols.map((c) => `P(${c})`)] : [`predicted ${meta.dataset.target_column}`]));
  const body = el('tbody');
  let hits = 0;
  preds.forEach((p, i) => {
    const cells = [el('td', {}, String(i + 1))];
    const actual = truth?.[i];
    if (truth) cells.push(el('td', {}, actual));
    const attrs = { 'data-row': i };
    if (classes) {
      cells.push(el('td', {}, p.predicted_label), el('td', {}, pct(p.confidence)));
      cells.push(...probCols.map((_, k) => el('td', {}, p.probabilities[k].toFixed(3))));
      Object.assign(attrs, { 'data-label': p.predicted_label, 'data-probs': JSON.stringify(p.probabilities) });
      if (truth && actual === p.predicted_label) hits++;
      if (truth && actual !== p.predicted_label) attrs.class = 'miss';
    } else {
      cells.push(el('td', {}, fmt(p.predicted_value)));
      attrs['data-value'] = p.predicted_value;
    }
    if (i < MAX_SHOWN) body.append(el('tr', attrs, ...cells));
  });
  const caption = [`${preds.length} predictions`];
  if (preds.length > MAX_SHOWN) caption.push(`first ${MAX_SHOWN} shown`);
  if (truth && classes) caption.push(`${pct(hits / preds.length)} match the ${meta.dataset.target_column} column`);
  table.replaceChildren(
    el('caption', {}, caption.join(' · ')),
    el('thead', {}, el('tr', {}, ...head.map((h) => el('th', { scope: 'col' }, h)))),
    body,
  );
  table.hidden = false;
}

// ---------- model card ----------

function renderCard() {
  const d = meta.dataset;
  const a = meta.architecture;
  const facts = [
    ['Model', meta.model_id],
    ['Task', `${meta.task_type} of ${d.target_column}${meta.classes ? ` (${meta.classes.join(', ')})` : ''}`],
    ['Saved', meta.saved_at],
    ['Data', `${d.source}: ${d.rows} rows (train ${d.train_rows} / val ${d.val_rows} / test ${d.test_rows})`],
    ['Network', `${a.input_dim} → ${[...a.hidden_dims, a.output_dim].join(' → ')}, ${a.activation}, dropout ${fmt(a.dropout_rate)}`],
    ['Training', `${meta.epochs_run} epochs, best ${meta.best_epoch}, ${fmt(meta.train_seconds)} s on ${meta.device || 'cpu'}`],
    ['Missing values', `filled by ${meta.preprocessing.missing_strategy}`],
  ];
  for (const c of meta.preprocessing.dropped_columns ?? []) facts.push(['Dropped column', `${c.name}: ${c.reason}`]);
  for (const w of meta.warnings ?? []) facts.push(['Warning', w]);
  $('card-facts').replaceChildren(...facts.flatMap(([k, v]) => [el('dt', {}, k), el('dd', {}, v)]));

  const tm = meta.test_metrics ?? {}; // null when the run had no test rows
  const metrics = Object.entries(tm).filter(([, v]) => typeof v === 'number');
  $('metrics').replaceChildren(
    ...metrics.map(([k, v]) =>
      el('div', { 'data-metric': k }, el('dt', {}, k.replace(/_/g, ' ')), el('dd', {}, fmt(v))),
    ),
  );

  const cm = tm.confusion_matrix;
  $('confusion-wrap').hidden = !cm;
  if (cm) {
    const labels = meta.classes ?? cm.map((_, i) => String(i));
    const max = Math.max(1, ...cm.flat());
    $('confusion').replaceChildren(
      el('thead', {}, el('tr', {}, el('th', {}, 'true \\ pred'), ...labels.map((l) => el('th', { scope: 'col' }, l)))),
      el(
        'tbody',
        {},
        ...cm.map((row, i) =>
          el(
            'tr',
            {},
            el('th', { scope: 'row' }, labels[i]),
            ...row.map((n, j) => {
              const alpha = (0.08 + 0.8 * (n / max)).toFixed(2);
              const style = `background:rgb(${i === j ? '22 128 80' : '200 60 40'} / ${n ? alpha : 0})`;
              return el('td', { style, class: n / max > 0.55 ? 'dark' : null }, String(n));
            }),
          ),
        ),
      ),
    );
  }
  $('curves').replaceChildren(curves(meta.history, meta.best_epoch));
  const importance = meta.explain?.global_importance ?? [];
  $('importance-wrap').hidden = !importance.length;
  const top = Math.max(0, ...importance.map((i) => i.mean_abs_shap));
  $('importance').replaceChildren(...importance.map((i) => contribRow(i.feature, '', i.mean_abs_shap, top, false)));
  renderTuning(meta.tuning);
}

/** A tuned value for a table cell: lists joined, small and large numbers in 3 significant digits. */
function fmtParam(v) {
  if (v == null) return '—';
  if (Array.isArray(v)) return v.length ? v.map(fmtParam).join(',') : 'none';
  if (typeof v === 'number') {
    if (Number.isInteger(v) || !Number.isFinite(v)) return String(v);
    return Math.abs(v) < 1e-3 ? v.toExponential(2) : String(Number(v.toPrecision(3)));
  }
  return typeof v === 'object' ? JSON.stringify(v) : String(v);
}

const PARAM_NAMES = {
  hidden_dims: 'hidden',
  dropout_rate: 'dropout',
  learning_rate: 'learning rate',
  weight_decay: 'weight decay',
  batch_size: 'batch',
};

const STOPPED_BY = { trials: 'all trials ran', budget: 'the time budget', cancelled: 'cancelled' };

/** The search that chose this model (`tuning`, written by `trainer tune`): a summary and one row per trial. */
function renderTuning(t) {
  const wrap = $('tuning-wrap');
  const trials = Array.isArray(t?.trials) ? t.trials : null;
  wrap.hidden = !trials;
  if (!trials) {
    $('tuning-summary').replaceChildren();
    $('tuning-options').textContent = '';
    $('tuning-table').replaceChildren();
    return;
  }
  const count = (state) => trials.filter((x) => x.state === state).length;
  const o = t.options ?? {};
  const planned = o.trials && o.trials !== trials.length ? ` of ${o.trials}` : '';
  const tiles = [
    ['trials', 'trials', `${trials.length}${planned}`],
    ['completed', 'completed', count('completed')],
    ['pruned', 'pruned', count('pruned')],
    ['failed', 'failed', count('failed')],
    ['best_trial', 'winner', `#${t.best_trial}`],
    ['best_val_loss', 'winner val loss', fmt(t.best_val_loss)],
    ...(t.lowest_trial != null ? [['lowest_trial', 'lowest val loss', `#${t.lowest_trial}`]] : []),
    ['seconds', 'search', `${fmt(t.seconds)} s`],
    ['stopped_by', 'stopped by', STOPPED_BY[t.stopped_by] ?? String(t.stopped_by)],
  ];
  $('tuning-summary').replaceChildren(
    ...tiles.map(([k, name, v]) => el('div', { 'data-k': k }, el('dt', {}, name), el('dd', {}, String(v)))),
  );
  const p = o.pruning;
  const options = [];
  if (o.sampler) options.push(o.sampler === 'tpe' ? `TPE sampler after ${o.warmup_trials ?? 0} random trials` : `${o.sampler} sampler`);
  if (p) options.push(p.enabled ? `successive-halving pruning from epoch ${p.min_epochs}, η = ${p.reduction_factor}` : 'no pruning');
  if (o.parallel > 1) options.push(`${o.parallel} trials at once`);
  if (o.budget_seconds != null) options.push(`budget ${fmt(o.budget_seconds)} s`);
  const winner = t.selected_by ? `★ marks the winner (${t.selected_by})` : '★ marks the winner';
  $('tuning-options').textContent = options.length ? `${options.join('; ')}. Trials in the order sampled; ${winner}.` : '';

  // Param columns: every tuned name, in order of first appearance.
  const keys = [...new Set(trials.flatMap((x) => Object.keys(x.params ?? {})))];
  const head = [['#'], ['state', 'text'], ['best val loss'], ['epochs'], ['seconds'], ...keys.map((k) => [PARAM_NAMES[k] ?? k.replace(/_/g, ' '), 'text'])];
  const rows = trials.map((x) => {
    const best = x.number === t.best_trial;
    const rungs = (x.rung_losses ?? []).map((r) => `epoch ${r.epoch}: ${fmt(r.val_loss)}`).join(', ');
    const state = x.state === 'pruned' && x.rung_losses?.length ? `pruned at ${x.rung_losses.at(-1).epoch}` : x.state;
    const star = best ? [el('span', { class: 'star', title: 'the winner', 'aria-hidden': 'true' }, ' ★'), el('span', { class: 'sr-only' }, ' (winner)')] : [];
    return el(
      'tr',
      { class: `trial ${x.state}${best ? ' best' : ''}`, 'data-trial': x.number, 'data-state': x.state, 'data-best': best ? 'true' : null },
      el('th', { scope: 'row' }, String(x.number), ...star),
      el('td', { class: 'state', title: x.error ?? null }, state, x.error ? el('span', { class: 'why' }, `: ${x.error}`) : ''),
      el(
        'td',
        { title: [x.best_val_loss_se != null ? `± ${fmt(x.best_val_loss_se)} (standard error)` : '', rungs ? `rungs: ${rungs}` : ''].filter(Boolean).join('; ') || null },
        x.best_val_loss == null ? '—' : fmt(x.best_val_loss),
      ),
      el('td', {}, String(x.epochs_run ?? '—')),
      el('td', {}, x.seconds == null ? '—' : String(Number(x.seconds.toPrecision(3)))),
      ...keys.map((k) => el('td', { 'data-param': k }, fmtParam(x.params?.[k]))),
    );
  });
  $('tuning-table').replaceChildren(
    el('thead', {}, el('tr', {}, ...head.map(([h, cls]) => el('th', { scope: 'col', class: cls }, h)))),
    el('tbody', {}, ...rows),
  );
}

/** Train and validation loss per epoch as an inline SVG line chart. */
function curves(history, best) {
  const W = 640;
  const H = 260;
  const m = { l: 60, r: 16, t: 40, b: 50 };
  const title = svg('title', { id: 'curves-title' });
  title.textContent = 'Training and validation loss per epoch';
  const root = svg('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-labelledby': 'curves-title', 'data-testid': 'curves-svg' }, title);
  if (!history?.length) {
    root.append(svg('text', { x: W / 2, y: H / 2, 'text-anchor': 'middle' }, 'no training history'));
    return root;
  }
  const series = [
    ['train loss', 'train', history.map((h) => [h.epoch, h.train_loss])],
    ['validation loss', 'val', history.filter((h) => h.val_loss != null).map((h) => [h.epoch, h.val_loss])],
  ].filter(([, , pts]) => pts.length);
  const ys = series.flatMap(([, , pts]) => pts.map((p) => p[1]));
  const [lo, hi] = [Math.min(...ys), Math.max(...ys)];
  // A round tick step (1, 2, 2.5 or 5 × 10^k) giving about 4 intervals, axis ends on ticks.
  const raw = (hi - lo) / 4 || Math.abs(hi) / 4 || 1;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const tick = [1, 2, 2.5, 5, 10].map((s) => s * mag).find((s) => s >= raw);
  const [y0, y1] = [Math.floor(lo / tick) * tick, Math.max(Math.ceil(hi / tick), Math.floor(lo / tick) + 1) * tick];
  const e1 = Math.max(2, history.at(-1).epoch);
  const x = (e) => m.l + ((e - 1) / (e1 - 1)) * (W - m.l - m.r);
  const y = (v) => H - m.b - ((v - y0) / (y1 - y0)) * (H - m.t - m.b);
  const text = (attrs, s) => svg('text', attrs, s);

  const grid = svg('g', { class: 'grid' });
  for (let k = 0; y0 + k * tick <= y1 + tick / 1e6; k++) {
    const v = y0 + k * tick;
    grid.append(
      svg('line', { x1: m.l, x2: W - m.r, y1: y(v), y2: y(v) }),
      text({ x: m.l - 6, y: y(v) + 4, 'text-anchor': 'end' }, fmt(Number(v.toFixed(10)))),
    );
  }
  const step = Math.max(1, Math.ceil((e1 - 1) / 8));
  for (let e = 1; e <= e1; e += step) grid.append(text({ x: x(e), y: H - m.b + 22, 'text-anchor': 'middle' }, String(e)));
  grid.append(text({ x: (m.l + W - m.r) / 2, y: H - 4, 'text-anchor': 'middle' }, 'epoch'));
  root.append(grid);

  if (best >= 1 && best <= e1) {
    root.append(
      svg('line', { class: 'best', x1: x(best), x2: x(best), y1: m.t, y2: H - m.b }),
      // Right of the line, or left of it when the line is near the right edge.
      x(best) > W - m.r - 100
        ? text({ class: 'best-label', x: x(best) - 4, y: m.t + 10, 'text-anchor': 'end' }, `best epoch ${best}`)
        : text({ class: 'best-label', x: x(best) + 4, y: m.t + 10 }, `best epoch ${best}`),
    );
  }
  series.forEach(([name, cls, pts], k) => {
    root.append(
      svg('polyline', { class: `line ${cls}`, points: pts.map(([e, v]) => `${x(e).toFixed(1)},${y(v).toFixed(1)}`).join(' ') }),
      svg('line', { class: `line ${cls}`, x1: m.l + k * 150, x2: m.l + k * 150 + 22, y1: 12, y2: 12 }),
      text({ x: m.l + k * 150 + 28, y: 16 }, name),
    );
  });
  return root;
}

$('csv-predict').addEventListener('click', () => model && predictCsv());
start();
