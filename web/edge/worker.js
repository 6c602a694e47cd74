// Edge worker (Cloudflare Workers / workerd module syntax): routing and transport only. Every
// request shape, answer and error body is the inference core's (`model.handle`), so the worker
// answers exactly as `trainer serve` does, byte for byte.
//
// The three imports sit beside this file when deployed (see README.md): the wasm-bindgen
// `--target web` glue, the wasm as a WebAssembly.Module, and the bundle as bytes (a data module).
import { errorReply, initSync, Model } from './inference.js';
import wasmModule from './inference_bg.wasm';
import bundleBytes from './model.safetensors';

// Once per isolate, at module scope: requests only predict.
initSync({ module: wasmModule });
const model = Model.fromBundle(new Uint8Array(bundleBytes));
const MODEL_ID = model.modelId;
const BODY_LIMIT = 10 * 1024 * 1024; // as the server's --max-body-bytes
const MAX_ROWS = 10000; // as the server's --max-batch-rows

// [method, path pattern, protocol]; a capture group is the model the URL names.
const ROUTES = [
  ['POST', /^\/(?:api\/ml\/)?predict$/, 'api_ml'],
  ['POST', /^\/v1\/models\/([^/:]+):predict$/, 'kserve_v1'],
  ['POST', /^\/v2\/models\/([^/]+)(?:\/versions\/[^/]+)?\/infer$/, 'oip_v2'],
  ['POST', /^\/invocations$/, 'mlflow'],
];

const json = (body, status = 200) => new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json' } });
const serves = (name) => name === MODEL_ID || name === 'latest';

/** The protocols' metadata and health reads (GET). */
function read(pathname) {
  if (pathname === '/v2') return json({ name: 'trainer-edge', version: '1', extensions: ['binary_tensor_data'] });
  if (pathname === '/v2/health/live') return json({ live: true });
  if (pathname === '/v2/health/ready') return json({ ready: true });
  if (pathname === '/ping') return new Response('\n', { headers: { 'content-type': 'application/json' } });
  let m = pathname.match(/^\/v2\/models\/([^/]+)(?:\/versions\/[^/]+)?(\/ready)?$/);
  if (m) {
    const name = decodeURIComponent(m[1]);
    if (!serves(name)) return fail('oip_v2', 404, 'model_not_found', `model \`${name}\` not found`);
    return m[2] ? json({ name, ready: true }) : new Response(model.oipMetadata(), { headers: { 'content-type': 'application/json' } });
  }
  m = pathname.match(/^\/v1\/models\/([^/:]+)$/);
  if (m) {
    const name = decodeURIComponent(m[1]);
    return serves(name) ? json({ name, ready: true }) : fail('kserve_v1', 404, 'model_not_found', `model \`${name}\` not found`);
  }
  return null;
}

/** A core reply ({status, contentType, body, jsonHeaderLength}) as a Response. */
function respond(reply, extra = {}) {
  const headers = { 'content-type': reply.contentType, ...extra };
  if (reply.jsonHeaderLength != null) headers['inference-header-content-length'] = String(reply.jsonHeaderLength);
  return new Response(reply.body, { status: reply.status, headers });
}

const fail = (protocol, status, kind, message, extra) => respond(errorReply(protocol, status, kind, message), extra);

async function predict(request, protocol, urlModel) {
  const announced = Number(request.headers.get('content-length') ?? 0);
  if (announced > BODY_LIMIT) return fail(protocol, 413, 'payload_too_large', `request body exceeds ${BODY_LIMIT} bytes`);
  const body = new Uint8Array(await request.arrayBuffer());
  if (body.byteLength > BODY_LIMIT) return fail(protocol, 413, 'payload_too_large', `request body exceeds ${BODY_LIMIT} bytes`);
  const contentType = request.headers.get('content-type') ?? undefined;
  let named = urlModel;
  if (protocol === 'api_ml') {
    // `/api/ml/predict` names its model in the body; a bad body is answered as the core says.
    try {
      named = Model.modelIdOf(body, contentType);
    } catch (e) {
      return fail(protocol, e.status, e.kind, e.message);
    }
  }
  if (named != null && !serves(named)) {
    return fail(protocol, 404, 'model_not_found', `model \`${named}\` not found (this worker serves \`${MODEL_ID}\`)`);
  }
  const header = request.headers.get('inference-header-content-length');
  return respond(model.handle(protocol, body, contentType, MAX_ROWS, header == null ? undefined : Number(header)));
}

export default {
  async fetch(request) {
    const { pathname } = new URL(request.url);
    try {
      if (request.method === 'GET' && (pathname === '/' || pathname === '/model')) {
        const meta = model.metadata();
        return json({ model_id: MODEL_ID, task_type: meta.task_type, feature_names: model.featureNames, classes: meta.classes ?? null, test_metrics: meta.test_metrics });
      }
      const answer = request.method === 'GET' ? read(pathname) : null;
      if (answer) return answer;
      for (const [method, pattern, protocol] of ROUTES) {
        const m = pathname.match(pattern);
        if (!m) continue;
        if (request.method !== method) {
          return fail(protocol, 405, 'method_not_allowed', `${request.method} ${pathname}: use ${method}`, { allow: method });
        }
        return await predict(request, protocol, m[1] && decodeURIComponent(m[1]));
      }
      return fail('api_ml', 404, 'not_found', `no route ${pathname}`);
    } catch (e) {
      return fail('api_ml', 500, 'internal', String(e?.message ?? e));
    }
  },
};
