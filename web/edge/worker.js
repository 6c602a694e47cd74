// Edge worker (Cloudflare Workers / workerd module syntax): serves POST /predict from one model
// bundle compiled into the worker. Same request and response shapes as the server's
// POST /api/ml/predict: one row, many rows, or records; errors are {"error": kind, "message"}.
//
// The three imports sit beside this file when deployed (see README.md): the wasm-bindgen
// `--target web` glue, the wasm as a WebAssembly.Module, and the bundle as bytes (a data module).
import { initSync, Model } from './inference.js';
import wasmModule from './inference_bg.wasm';
import bundleBytes from './model.safetensors';

// Once per isolate, at module scope: requests only predict.
initSync({ module: wasmModule });
const model = Model.fromBundle(new Uint8Array(bundleBytes));
const meta = model.metadata();
const MODEL_ID = meta.model_id;
const NAMES = model.featureNames;
const BODY_LIMIT = 10 * 1024 * 1024; // as the server's

class ApiError extends Error {
  constructor(status, kind, message) {
    super(message);
    this.status = status;
    this.kind = kind;
  }
}

const json = (body, status = 200, headers = {}) =>
  new Response(JSON.stringify(body), {
    status,
    headers: { 'content-type': 'application/json', ...headers },
  });

// The core's messages name their kind only in words; map them to the API's error kinds.
const KINDS = [
  [/^wrong number of features/, 'wrong_feature_count'],
  [/^unknown category/, 'unknown_category'],
  [/expects a number/, 'not_a_number'],
  [/non-finite number/, 'non_finite'],
  [/has no fill value/, 'missing_value'],
  [/unsupported value/, 'invalid_value'],
];
const predictError = (message) =>
  new ApiError(400, (KINDS.find(([re]) => re.test(message)) ?? [, 'bad_request'])[1], message);

// The shortest decimal that reads back as the same f32, so numbers print as the server's do.
function f32(x) {
  for (let digits = 1; digits < 10; digits++) {
    const y = Number(x.toPrecision(digits));
    if (Math.fround(y) === x) return y;
  }
  return x;
}

function tidy(p) {
  if (p.probabilities) {
    p.confidence = f32(p.confidence);
    p.probabilities = p.probabilities.map(f32);
  }
  return p;
}

// One JSON value as the server reads it: bools become text, arrays and objects are rejected.
function cell(v, name) {
  if (v === null || v === undefined || typeof v === 'number' || typeof v === 'string') return v ?? null;
  if (typeof v === 'boolean') return String(v);
  throw predictError(
    `column \`${name}\` got an unsupported value ${JSON.stringify(v)} (expected a number, a string or null)`,
  );
}

function predictRow(values) {
  if (values.length !== NAMES.length) {
    throw predictError(`wrong number of features: expected ${NAMES.length}, got ${values.length}`);
  }
  const row = values.map((v, i) => cell(v, NAMES[i]));
  try {
    return tidy(model.predict(row));
  } catch (e) {
    // The wasm core's errors carry the API's error kind.
    throw new ApiError(400, e.kind ?? 'bad_request', e.message);
  }
}

function predictRecord(rec) {
  return predictRow(NAMES.map((n) => (Object.hasOwn(rec, n) ? rec[n] : null)));
}

function inRow(i, f) {
  try {
    return f();
  } catch (e) {
    if (e instanceof ApiError) e.message = `row ${i}: ${e.message}`;
    throw e;
  }
}

const isObject = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);
const invalid = (message) => new ApiError(422, 'validation_error', message);

function answer(req) {
  if (!isObject(req)) throw invalid('the request body must be a JSON object');
  for (const part of [req, req.data]) {
    if (!isObject(part)) continue;
    if ('records' in part && part.records !== null && !(Array.isArray(part.records) && part.records.every(isObject))) {
      throw invalid('`records` must be an array of objects keyed by column name');
    }
  }
  if (req.data != null && !isObject(req.data)) throw invalid('`data` must be an object');
  if (req.model_id != null && typeof req.model_id !== 'string') throw invalid('`model_id` must be a string');
  if (req.model_id != null && req.model_id !== MODEL_ID) {
    throw new ApiError(404, 'model_not_found', `model \`${req.model_id}\` not found (this worker serves \`${MODEL_ID}\`)`);
  }
  const d = req.data;
  const input = isObject(d) && (d.features != null || d.records != null) ? d : req;
  const features = input.features ?? undefined;
  const records = input.records ?? undefined;
  let body;
  if (features !== undefined && records !== undefined) {
    throw invalid('give either `features` or `records`, not both');
  } else if (Array.isArray(features) && features.length > 0 && features.every(Array.isArray)) {
    body = { predictions: features.map((r, i) => inRow(i, () => predictRow(r))) };
  } else if (Array.isArray(features)) {
    body = predictRow(features);
  } else if (features !== undefined) {
    throw invalid('`features` must be an array of values or an array of rows');
  } else if (records !== undefined) {
    body = { predictions: records.map((r, i) => inRow(i, () => predictRecord(r))) };
  } else {
    throw invalid('missing `data.features` (one row or an array of rows) or `data.records`');
  }
  body.model_id = MODEL_ID;
  return body;
}

async function handlePredict(request) {
  if (request.method !== 'POST') {
    throw new ApiError(405, 'method_not_allowed', `${request.method} /predict: use POST`);
  }
  const type = request.headers.get('content-type') ?? '';
  const mime = type.split(';')[0].trim().toLowerCase();
  if (mime !== 'application/json' && !mime.endsWith('+json')) {
    throw new ApiError(415, 'unsupported_media_type', `expected Content-Type: application/json, got ${JSON.stringify(type)}`);
  }
  const bytes = await request.arrayBuffer();
  if (bytes.byteLength > BODY_LIMIT) {
    throw new ApiError(413, 'payload_too_large', `request body exceeds ${BODY_LIMIT} bytes`);
  }
  let req;
  try {
    req = JSON.parse(new TextDecoder().decode(bytes));
  } catch (e) {
    throw new ApiError(400, 'malformed_json', `malformed JSON: ${e.message}`);
  }
  return json(answer(req));
}

export default {
  async fetch(request) {
    const { pathname } = new URL(request.url);
    try {
      if (pathname === '/predict') return await handlePredict(request);
      if (pathname === '/' || pathname === '/model') {
        return json({
          model_id: MODEL_ID,
          task_type: meta.task_type,
          feature_names: NAMES,
          classes: meta.classes ?? null,
          test_metrics: meta.test_metrics,
        });
      }
      throw new ApiError(404, 'not_found', `no route ${pathname}: POST /predict, GET /model`);
    } catch (e) {
      if (!(e instanceof ApiError)) e = new ApiError(500, 'internal', String(e?.message ?? e));
      const allow = e.status === 405 ? { allow: 'POST' } : {};
      return json({ error: e.kind, message: e.message }, e.status, allow);
    }
  },
};
