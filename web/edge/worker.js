// Edge worker (Cloudflare Workers / workerd module syntax): routing, model lookup and transport
// only. Every request shape, answer and error body is the inference core's (@trainer/inference:
// `model.handle`, `errorReply`), so the worker answers exactly as `trainer serve` does.
//
// Models (see README.md):
// - built in: `./model.safetensors`, imported at build time (a data module; an empty file = none);
// - by id, at run time: with MODELS_URL (a `trainer serve`: GET /api/ml/models/{id}/bundle) or
//   MODELS_KV (a KV namespace: key = model id, value = the bundle bytes), loaded once per isolate
//   into a bounded LRU cache (MODEL_CACHE_ENTRIES, MODEL_CACHE_BYTES) and revalidated at most
//   every MODEL_REVALIDATE_SECONDS (If-None-Match with the server's ETag; a 304 keeps the model).
import { errorReply, Model } from '@trainer/inference';
import builtInBytes from './model.safetensors';

const BODY_LIMIT = 10 * 1024 * 1024; // as the server's --max-body-bytes
const MAX_ROWS = 10000; // as the server's --max-batch-rows
const LATEST = 'latest';
/** The ids `trainer train` gives (`model_2026_12_01_001`): nothing else is ever fetched. */
const MODEL_ID = /^model_\d{4}_\d{2}_\d{2}_\d{3,9}$/;
const DEFAULTS = { entries: 8, bytes: 32 * 1024 * 1024, revalidateSeconds: 60 };

// Once per isolate, at module scope: the wasm is instantiated by the package's workerd entry.
const builtIn = builtInBytes.byteLength > 0 ? Model.fromBundle(new Uint8Array(builtInBytes)) : null;

// [method, path pattern, protocol]; a capture group is the model the URL names.
const ROUTES = [
  ['POST', /^\/(?:api\/ml\/)?predict$/, 'api_ml'],
  ['POST', /^\/v1\/models\/([^/:]+):predict$/, 'kserve_v1'],
  ['POST', /^\/v2\/models\/([^/]+)(?:\/versions\/[^/]+)?\/infer$/, 'oip_v2'],
  ['POST', /^\/invocations$/, 'mlflow'],
];

/** A URL path segment, decoded (as is when it is not valid percent-encoding: no id matches it then). */
const segment = (s) => {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
};
const json = (body, status = 200) => new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json' } });

/** An error the worker answers itself, in the protocol's shape. */
class HostError extends Error {
  constructor(status, kind, message) {
    super(message);
    this.status = status;
    this.kind = kind;
  }
}
const notFound = (name, why = '') => new HostError(404, 'model_not_found', `model \`${String(name).slice(0, 200)}\` not found${why}`);

// ---------------------------------------------------------------------------- model sources

const hex = (buf) => Array.from(new Uint8Array(buf), (b) => b.toString(16).padStart(2, '0')).join('');
const sha256Tag = async (bytes) => `"${hex(await crypto.subtle.digest('SHA-256', bytes))}"`;

function settings(env) {
  const number = (name, fallback) => {
    const v = env[name];
    if (v == null || v === '') return fallback;
    const n = Number(v);
    if (!Number.isFinite(n) || n < 0) throw new Error(`${name} must be a number ≥ 0, got ${JSON.stringify(v)}`);
    return n;
  };
  const fetcher = typeof env.MODELS?.fetch === 'function' ? env.MODELS : null; // a service binding
  const url = env.MODELS_URL ? String(env.MODELS_URL).replace(/\/+$/, '') : fetcher ? 'http://models' : null;
  return {
    kv: env.MODELS_KV ?? null,
    url,
    fetch: fetcher ? (u, init) => fetcher.fetch(u, init) : (u, init) => fetch(u, init),
    token: env.MODELS_TOKEN || null,
    defaultModel: env.DEFAULT_MODEL || null,
    maxEntries: Math.max(1, Math.floor(number('MODEL_CACHE_ENTRIES', DEFAULTS.entries))),
    maxBytes: number('MODEL_CACHE_BYTES', DEFAULTS.bytes),
    revalidateMs: number('MODEL_REVALIDATE_SECONDS', DEFAULTS.revalidateSeconds) * 1000,
  };
}

/**
 * A bundle from the configured source: `{bytes, etag}`, `'unchanged'` (the `etag` given still
 * holds) or `null` (no such model). Throws a HostError when the source fails.
 */
async function fetchBundle(cfg, id, etag) {
  if (cfg.kv) {
    let buf;
    try {
      buf = await cfg.kv.get(id, 'arrayBuffer');
    } catch (e) {
      throw new HostError(503, 'store_unavailable', `the model store (KV) failed: ${e?.message ?? e}`);
    }
    if (buf == null) return null;
    const tag = await sha256Tag(buf);
    return tag === etag ? 'unchanged' : { bytes: new Uint8Array(buf), etag: tag };
  }
  const headers = {};
  if (etag) headers['if-none-match'] = etag;
  if (cfg.token) headers.authorization = `Bearer ${cfg.token}`;
  let r;
  try {
    r = await cfg.fetch(`${cfg.url}/api/ml/models/${encodeURIComponent(id)}/bundle`, { headers });
  } catch (e) {
    throw new HostError(503, 'store_unavailable', `the model server could not be reached: ${e?.message ?? e}`);
  }
  if (r.status === 304 && etag) return 'unchanged';
  if (r.status === 404) {
    await r.body?.cancel();
    return null;
  }
  if (r.status !== 200) {
    await r.body?.cancel();
    throw new HostError(503, 'store_unavailable', `the model server answered ${r.status} for model \`${id}\``);
  }
  if (Number(r.headers.get('content-length') ?? 0) > cfg.maxBytes) {
    await r.body?.cancel();
    throw tooLarge(id, Number(r.headers.get('content-length')), cfg);
  }
  let bytes;
  try {
    bytes = new Uint8Array(await r.arrayBuffer());
  } catch (e) {
    throw new HostError(503, 'store_unavailable', `the model server's answer for \`${id}\` broke off: ${e?.message ?? e}`);
  }
  return { bytes, etag: r.headers.get('etag') ?? (await sha256Tag(bytes)) };
}

const tooLarge = (id, n, cfg) =>
  new HostError(500, 'model_too_large', `model \`${id}\`'s bundle (${n} bytes) exceeds this worker's model cache (MODEL_CACHE_BYTES = ${cfg.maxBytes})`);

/** The newest model's id on the server (`GET /api/ml/models?limit=1`), or null. */
async function newestId(cfg) {
  let r;
  try {
    r = await cfg.fetch(`${cfg.url}/api/ml/models?limit=1`, { headers: cfg.token ? { authorization: `Bearer ${cfg.token}` } : {} });
  } catch (e) {
    throw new HostError(503, 'store_unavailable', `the model server could not be reached: ${e?.message ?? e}`);
  }
  if (r.status !== 200) {
    await r.body?.cancel();
    throw new HostError(503, 'store_unavailable', `the model server answered ${r.status} for its model list`);
  }
  let list;
  try {
    list = await r.json();
  } catch (e) {
    throw new HostError(503, 'store_unavailable', `the model server's model list is not JSON: ${e?.message ?? e}`);
  }
  return Array.isArray(list) && typeof list[0]?.model_id === 'string' ? list[0].model_id : null;
}

// ---------------------------------------------------------------------------- the cache

/**
 * Models by id, per isolate: least recently used first in `entries`, evicted beyond
 * `maxEntries` or `maxBytes` (of bundle bytes). A model handed out is pinned until released, so
 * eviction never frees one that a request is about to use; concurrent loads of one id share a
 * single fetch.
 */
class ModelCache {
  constructor(cfg) {
    this.cfg = cfg;
    this.entries = new Map(); // id -> {model, etag, bytes, checkedAt, pins, evicted}
    this.bytes = 0;
    this.pending = new Map(); // id -> Promise of the load or revalidation in flight
    this.newest = null; // {id, checkedAt}
    this.newestLookup = null; // its lookup in flight
  }

  /** A pinned entry for `id`; release it with `release`. Throws a HostError. */
  async acquire(id) {
    for (let attempt = 0; attempt < 3; attempt++) {
      const e = this.entries.get(id);
      if (e && (attempt > 0 || Date.now() - e.checkedAt < this.cfg.revalidateMs)) {
        // Synchronously from the map: nothing can evict it between this lookup and the pin.
        this.entries.delete(id);
        this.entries.set(id, e); // most recently used
        e.pins++;
        return e;
      }
      let p = this.pending.get(id);
      if (!p) {
        p = this.refresh(id, e).finally(() => this.pending.delete(id));
        this.pending.set(id, p);
      }
      await p;
    }
    throw new HostError(503, 'store_unavailable', `model \`${id}\` was evicted while loading: raise MODEL_CACHE_ENTRIES`);
  }

  release(e) {
    e.pins--;
    if (e.evicted && e.pins === 0) e.model.free();
  }

  /** Load `id`, or revalidate the cached `stale` entry; the result is in `entries` (or gone). */
  async refresh(id, stale) {
    let got;
    try {
      got = await fetchBundle(this.cfg, id, stale?.etag);
    } catch (e) {
      if (!stale || !(e instanceof HostError) || e.status !== 503) throw e;
      console.warn(`revalidating ${id}: ${e.message}; serving the cached model`);
      stale.checkedAt = Date.now(); // stale if error, until the next interval
      return;
    }
    if (got === null) {
      if (stale) this.evict(id);
      throw notFound(id);
    }
    if (got === 'unchanged') {
      stale.checkedAt = Date.now();
      return;
    }
    if (got.bytes.byteLength > this.cfg.maxBytes) throw tooLarge(id, got.bytes.byteLength, this.cfg);
    let model;
    try {
      model = Model.fromBundle(got.bytes);
    } catch (e) {
      throw new HostError(500, 'corrupt_model', `model \`${id}\` cannot be loaded: ${e.message}`);
    }
    const stored = model.modelId;
    if (stored !== id) {
      model.free();
      throw new HostError(500, 'corrupt_model', `the bundle stored as \`${id}\` is model \`${stored}\``);
    }
    if (stale) this.evict(id);
    this.entries.set(id, { model, etag: got.etag, bytes: got.bytes.byteLength, checkedAt: Date.now(), pins: 0, evicted: false });
    this.bytes += got.bytes.byteLength;
    // Evict the least recently used, never the entry just loaded.
    for (const [old] of this.entries) {
      if (this.entries.size <= this.cfg.maxEntries && this.bytes <= this.cfg.maxBytes) break;
      if (old !== id) this.evict(old);
    }
  }

  evict(id) {
    const e = this.entries.get(id);
    if (!e) return;
    this.entries.delete(id);
    this.bytes -= e.bytes;
    e.evicted = true;
    if (e.pins === 0) e.model.free();
  }

  /**
   * The server's newest model id, looked up at most once per revalidation interval (one lookup
   * at a time; the last answer stands while the server cannot be reached).
   */
  async newestId() {
    if (this.newest && Date.now() - this.newest.checkedAt < this.cfg.revalidateMs) return this.newest.id;
    this.newestLookup ??= newestId(this.cfg)
      .then(
        (id) => (this.newest = { id, checkedAt: Date.now() }),
        (e) => {
          if (!this.newest || !(e instanceof HostError) || e.status !== 503) throw e;
          this.newest.checkedAt = Date.now();
        },
      )
      .finally(() => (this.newestLookup = null));
    await this.newestLookup;
    return this.newest.id;
  }
}

/** What serves a request's model: the built-in bundle, or the cache. */
class Models {
  constructor(env) {
    this.cfg = settings(env);
    this.byId = this.cfg.kv || this.cfg.url ? new ModelCache(this.cfg) : null;
  }

  /** `{model, release}` for the model a request names (null or `latest`: the default). */
  async acquire(name) {
    if (name == null || name === LATEST) {
      if (builtIn) return { model: builtIn, release() {} };
      name = this.cfg.defaultModel ?? (this.byId && !this.cfg.kv ? await this.byId.newestId() : null);
      if (name == null) {
        throw new HostError(404, 'model_not_found', 'no trained model is available: train one first, or name one with model_id');
      }
    }
    if (builtIn && name === builtIn.modelId) return { model: builtIn, release() {} };
    if (!this.byId) throw notFound(name, builtIn ? ` (this worker serves \`${builtIn.modelId}\`)` : '');
    // Refused before any fetch: a client cannot make the worker fetch another path.
    if (!MODEL_ID.test(name)) throw notFound(name, ' (not a model id)');
    const e = await this.byId.acquire(name);
    return { model: e.model, release: () => this.byId.release(e) };
  }
}

let models; // per isolate, made on the first request (bindings come with requests)

// ---------------------------------------------------------------------------- transport

/** A core reply ({status, contentType, body, jsonHeaderLength}) as a Response. */
function respond(reply, extra = {}) {
  const headers = { 'content-type': reply.contentType, ...extra };
  if (reply.jsonHeaderLength != null) headers['inference-header-content-length'] = String(reply.jsonHeaderLength);
  return new Response(reply.body, { status: reply.status, headers });
}

const fail = (protocol, status, kind, message, extra) => respond(errorReply(protocol, status, kind, message), extra);

/** Run `use(model)` with the model `name` names, or answer the lookup's error in `protocol`. */
async function withModel(protocol, name, use) {
  let lease;
  try {
    lease = await models.acquire(name);
  } catch (e) {
    if (e instanceof HostError) return fail(protocol, e.status, e.kind, e.message);
    throw e;
  }
  try {
    return use(lease.model);
  } finally {
    lease.release();
  }
}

/** The protocols' metadata and health reads (GET). */
function read(pathname) {
  if (pathname === '/v2') return json({ name: 'trainer-edge', version: '1', extensions: ['binary_tensor_data'] });
  if (pathname === '/v2/health/live') return json({ live: true });
  if (pathname === '/v2/health/ready') return json({ ready: true });
  if (pathname === '/ping') return new Response('\n', { headers: { 'content-type': 'application/json' } });
  if (pathname === '/' || pathname === '/model') {
    return withModel('api_ml', null, (model) => {
      const meta = model.metadata();
      return json({ model_id: model.modelId, task_type: meta.task_type, feature_names: model.featureNames, classes: meta.classes ?? null, test_metrics: meta.test_metrics });
    });
  }
  let m = pathname.match(/^\/v2\/models\/([^/]+)(?:\/versions\/[^/]+)?(\/ready)?$/);
  if (m) {
    const name = segment(m[1]);
    return withModel('oip_v2', name, (model) =>
      m[2] ? json({ name, ready: true }) : new Response(model.oipMetadata(), { headers: { 'content-type': 'application/json' } }),
    );
  }
  m = pathname.match(/^\/v1\/models\/([^/:]+)$/);
  if (m) {
    const name = segment(m[1]);
    return withModel('kserve_v1', name, () => json({ name, ready: true }));
  }
  return null;
}

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
  // As `trainer serve`: absent or 0 means "all JSON"; anything but a byte count is refused.
  const header = request.headers.get('inference-header-content-length')?.trim();
  const headerLength = header == null || header === '0' ? undefined : /^\d+$/.test(header) ? Number(header) : NaN;
  if (Number.isNaN(headerLength)) {
    return fail(protocol, 400, 'bad_request', `Inference-Header-Content-Length must be a byte count, got ${JSON.stringify(header.slice(0, 200))}`);
  }
  return withModel(protocol, named, (model) => respond(model.handle(protocol, body, contentType, MAX_ROWS, headerLength)));
}

export default {
  async fetch(request, env) {
    const { pathname } = new URL(request.url);
    try {
      models ??= new Models(env ?? {});
      const answer = request.method === 'GET' ? read(pathname) : null;
      if (answer) return await answer;
      for (const [method, pattern, protocol] of ROUTES) {
        const m = pathname.match(pattern);
        if (!m) continue;
        if (request.method !== method) {
          return fail(protocol, 405, 'method_not_allowed', `${request.method} ${pathname}: use ${method}`, { allow: method });
        }
        return await predict(request, protocol, m[1] && segment(m[1]));
      }
      return fail('api_ml', 404, 'not_found', `no route ${pathname}`);
    } catch (e) {
      return fail('api_ml', 500, 'internal', String(e?.message ?? e));
    }
  },
};
