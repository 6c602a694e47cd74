// The JS side of the wasm boundary, for the hot calls: reading a row costs one call instead
// of two wasm→JS calls per cell, and a prediction object is built directly instead of
// through JSON text. scripts/build-wasm.sh inlines this file into the wasm-bindgen glue, so
// the packages stay three files and edge workers need no extra module.

/**
 * Copy `features` into `out` (a Float64Array view of wasm memory) when every cell is a number,
 * null or undefined (written as NaN, which the core reads as missing), and return -1. Else
 * return the index of the first other cell, or -2 when `features` is not an array of
 * `out.length` cells; the caller then reads cell by cell.
 */
export function readNumericRow(features, out) {
  const list = Array.isArray(features) || (ArrayBuffer.isView(features) && !(features instanceof DataView));
  if (!list || features.length !== out.length) return -2;
  for (let i = 0; i < out.length; i++) {
    const v = features[i];
    if (typeof v === 'number') out[i] = v;
    else if (v === null || v === undefined) out[i] = NaN;
    else return i;
  }
  return -1;
}

/** `{predicted_class, predicted_label, confidence, probabilities}`; `probabilities` views wasm memory. */
export function classPrediction(predictedClass, label, probabilities) {
  const n = probabilities.length;
  const p = new Array(n);
  for (let i = 0; i < n; i++) p[i] = probabilities[i];
  return { predicted_class: predictedClass, predicted_label: label, confidence: p[predictedClass], probabilities: p };
}

/** `{predicted_value}`. */
export function valuePrediction(value) {
  return { predicted_value: value };
}

/**
 * The bytes of a request body: a string (UTF-8), bytes (Uint8Array, ArrayBuffer) or any other
 * value as JSON. Non-finite numbers, which JSON cannot hold, are written as NaN → null
 * (missing) and ±Infinity → "Infinity" text (which the core rejects by column, as native does).
 */
export function bodyBytes(body) {
  if (body instanceof Uint8Array) return body;
  if (body instanceof ArrayBuffer) return new Uint8Array(body);
  if (typeof body === 'string') return new TextEncoder().encode(body);
  const json = JSON.stringify(body, jsonCell);
  return new TextEncoder().encode(json ?? 'null');
}

/**
 * JSON for what JSON has no form for: NaN → null (missing); ±Infinity → text, BigInt → a
 * number (text past 2^53), typed arrays → arrays; a symbol or function → text like
 * `<symbol>`, so the core refuses it by column instead of JSON.stringify dropping it (which
 * would read as a missing value).
 */
function jsonCell(_, v) {
  switch (typeof v) {
    case 'number':
      return Number.isFinite(v) ? v : Number.isNaN(v) ? null : String(v);
    case 'bigint':
      return Number.isSafeInteger(Number(v)) ? Number(v) : String(v);
    case 'symbol':
    case 'function':
      return `<${typeof v}>`;
    default:
      return ArrayBuffer.isView(v) && !(v instanceof DataView) ? Array.from(v, Number) : v;
  }
}

/**
 * `predictBatch`'s cells as a Float64Array (null and undefined → NaN, missing), or the index
 * of the first cell that is not a number, or -1 when `features` is no array at all.
 */
export function batchValues(features) {
  if (features instanceof Float64Array) return features;
  if (ArrayBuffer.isView(features) && !(features instanceof DataView)) {
    return features instanceof BigInt64Array || features instanceof BigUint64Array ? Float64Array.from(features, Number) : Float64Array.from(features);
  }
  if (!Array.isArray(features)) return -1;
  const out = new Float64Array(features.length);
  for (let i = 0; i < features.length; i++) {
    const v = features[i];
    if (typeof v === 'number') out[i] = v;
    else if (v === null || v === undefined) out[i] = NaN;
    else return i;
  }
  return out;
}
