// Types of @trainer/inference: the trainer's inference core as wasm. Every entry of the package
// (browsers and bundlers, Node `import` and `require`, Deno, Bun, Workers/workerd) exports this
// same API. Predictions carry the HTTP API's field names and numbers (each probability is the
// shortest decimal of its f32 value, as `trainer serve` and `trainer predict --json` print it).

// ---------------------------------------------------------------------------- loading

/**
 * Where or what the .wasm is: a URL (a string or a `URL`), a `Request`, a `Response` (or a
 * promise of one), its bytes (an `ArrayBuffer` or a typed array), or a compiled
 * `WebAssembly.Module`. Typed loosely on purpose: these declarations need no DOM, Node or
 * Workers lib.
 */
export type InitInput = string | ArrayBuffer | ArrayBufferView | object;

/**
 * Load the wasm, once; later calls resolve at once. Needed before anything else only in
 * browsers, bundles and web workers (the `browser`/`worker`/default entry), where it fetches
 * `inference_bg.wasm` beside the module (`new URL('./inference_bg.wasm', import.meta.url)`)
 * unless `input` says otherwise. The Node, Deno, Bun and workerd entries load the wasm when they
 * are imported, and their `init` resolves at once, so `await init()` is portable.
 */
export function init(input?: InitInput | Promise<InitInput>): Promise<void>;

/**
 * Load the wasm synchronously from its bytes or a compiled `WebAssembly.Module` (nothing to do
 * once loaded, and in the Node, Deno, Bun and workerd entries).
 */
export function initSync(input?: ArrayBuffer | ArrayBufferView | object): void;

export default init;

// ---------------------------------------------------------------------------- requests

/** The wire protocols the core answers (`predictRequest`, `handle`, `errorReply`). */
export type Protocol = 'api_ml' | 'kserve_v1' | 'oip_v2' | 'mlflow';

/** `"classification"` or `"regression"`. */
export type TaskType = 'classification' | 'regression';

/**
 * One input value: a number, a category's text (numbers in categorical columns compare by value),
 * a bool (read as its text), or `null`/`undefined`/`NaN`/`""` for a missing value.
 */
export type Cell = number | string | boolean | null | undefined;

/** A request body: JSON text, its UTF-8 bytes, or a value to be sent as JSON. */
export type RequestBody = string | Uint8Array | ArrayBuffer | object;

// ---------------------------------------------------------------------------- predictions

/** A classifier's prediction. */
export interface ClassPrediction {
  /** Index of the most probable class in `metadata().classes`. */
  predicted_class: number;
  /** Its label. */
  predicted_label: string;
  /** Its probability (`probabilities[predicted_class]`). */
  confidence: number;
  /** One probability per class, in `metadata().classes` order. */
  probabilities: number[];
}

/** A regressor's prediction, in the target's units. */
export interface ValuePrediction {
  predicted_value: number;
}

/** A prediction: `ClassPrediction` for classifiers, `ValuePrediction` for regressors. */
export type Prediction = ClassPrediction | ValuePrediction;

// ---------------------------------------------------------------------------- explanations

/** Options of `explain`. */
export interface ExplainOptions {
  /**
   * Which output to explain: a class index, a class label, or `"all"` (every class, answered as
   * `{classes: [...]}`). Default: the predicted class (regressors have one output).
   */
  class?: number | string;
  /** A class index (same as a numeric `class`; wins over `class`). */
  classIndex?: number;
  /**
   * `"exact"` Shapley values (Gray-code enumeration, up to 10 features), `"permutation"`
   * sampling (antithetic permutations, with standard errors), or `"auto"` (default: exact when
   * the model has at most 10 features).
   */
  method?: 'auto' | 'exact' | 'permutation';
  /** Permutations per background row (`"permutation"`; default 2, one antithetic pair; at most 64). */
  permutations?: number;
  /** Seed of the permutation sampler (default 0): the same seed gives the same values. */
  seed?: number;
}

/** The Shapley values of one output. */
export interface OutputExplanation {
  /** The class explained (classifiers only). */
  class?: number;
  /** Its label (classifiers only). */
  label?: string;
  /** The output on the background (the expected value). */
  base_value: number;
  /** The output for this row: `base_value` plus the sum of `values`. */
  output: number;
  /** Each feature's contribution φ, by feature name. */
  values: Record<string, number>;
  /** Standard error of each φ (`method: "permutation"` only). */
  standard_errors?: Record<string, number>;
}

/** How an explanation was computed. */
export interface ExplanationInfo {
  /** The method used (`"auto"` resolved). */
  method: 'exact' | 'permutation';
  /** `"stored"`: the bundle's background rows; `"fill_row"`: one row of the fill values. */
  background: 'stored' | 'fill_row';
  /** Rows in the background set. */
  background_rows: number;
  /** Permutations sampled (`method: "permutation"` only). */
  permutations?: number;
}

/** The explanation of one output (the default, a class, or any regressor). */
export interface SingleExplanation extends ExplanationInfo, OutputExplanation {}

/** A classifier's explanation with `class: "all"`: one entry per class. */
export interface ClassesExplanation extends ExplanationInfo {
  classes: OutputExplanation[];
}

/** What `explain` returns; `"classes" in e` tells the two apart. */
export type Explanation = SingleExplanation | ClassesExplanation;

// ---------------------------------------------------------------------------- replies

/** `/api/ml/predict`'s answer to one row (`{"data": {"features": [...]}}`). */
export type ApiMlSingleResponse = Prediction & {
  model_id: string;
  /** With `"explain"` in the request. */
  explanation?: Explanation;
};

/** A prediction in a batch answer; with `"explain"` in the request it carries its explanation. */
export type BatchPrediction = Prediction & { explanation?: Explanation };

/** `/api/ml/predict`'s answer to rows or records. */
export interface ApiMlBatchResponse {
  model_id: string;
  predictions: BatchPrediction[];
}

/** `/api/ml/predict`'s answer. */
export type ApiMlResponse = ApiMlSingleResponse | ApiMlBatchResponse;

/** KServe V1 (`:predict`) and MLflow (`/invocations`) answers. */
export interface PredictionsResponse {
  predictions: BatchPrediction[];
  /** KServe V1's `:explain`: one per instance. */
  explanations?: Explanation[];
}

/** An Open Inference Protocol (KServe V2) output tensor. */
export interface OipTensor {
  name: string;
  datatype: string;
  shape: number[];
  /** The values, row-major (absent when sent as binary data, see `parameters.binary_data_size`). */
  data?: Array<number | string>;
  parameters?: { binary_data_size?: number; [key: string]: unknown };
}

/** An Open Inference Protocol (KServe V2) inference answer. */
export interface OipResponse {
  model_name: string;
  /** The request's `id`, echoed. */
  id?: string;
  outputs: OipTensor[];
}

/** A transport-level answer (`handle`, `errorReply`): what to send back, as is. */
export interface Reply {
  /** HTTP status. */
  status: number;
  /** The `Content-Type` to send. */
  contentType: string;
  /** The body's bytes. */
  body: Uint8Array;
  /** The Open Inference Protocol's `Inference-Header-Content-Length` to send, or `null`. */
  jsonHeaderLength: number | null;
}

// ---------------------------------------------------------------------------- metadata

/** One input feature's preprocessing. */
export interface FeatureSpec {
  name: string;
  kind: 'numeric' | 'categorical';
  /** The value a missing cell takes (numeric), or null. */
  fill_value: number | string | null;
  /** The vocabulary (categorical). */
  categories: string[] | null;
  [key: string]: unknown;
}

/** The bundle metadata (`metadata.json`); fields this version does not know are kept. */
export interface BundleMetadata {
  format_version: number;
  model_id: string;
  /** RFC 3339 time of export. */
  saved_at: string;
  task_type: TaskType;
  architecture: {
    input_dim: number;
    hidden_dims: number[];
    output_dim: number;
    dropout_rate: number;
    activation: string;
    batch_norm_eps: number;
  };
  train_config: Record<string, unknown>;
  /** Test-split metrics: accuracy, precision, recall, f1_score, confusion_matrix, … or r2, mse, mae, …. */
  test_metrics: Record<string, unknown>;
  preprocessing: {
    feature_names: string[];
    features: FeatureSpec[];
    missing_strategy: string;
    scaler: { mean: number[]; scale: number[] };
    [key: string]: unknown;
  };
  /** Class labels (classifiers), in `predicted_class` order; null for regressors. */
  classes: string[] | null;
  history: Array<Record<string, number>>;
  epochs_run: number;
  best_epoch: number;
  dataset: Record<string, unknown>;
  train_seconds: number;
  device: string;
  warnings: string[];
  /** sha256 of the tensors' raw bytes in sorted name order (checked at load). */
  weights_sha256: string;
  [key: string]: unknown;
}

// ---------------------------------------------------------------------------- errors

/** `kind` of a bundle that does not load (`fromBundle`, `fromParts`; `status` 500). */
export type BundleErrorKind =
  | 'not_safetensors'
  | 'missing_metadata'
  | 'invalid_metadata'
  | 'unsupported_version'
  | 'hash_mismatch'
  | 'tensor_mismatch'
  | 'non_finite_weights'
  | 'inconsistent_metadata';

/** `kind` of an input value that cannot be used; these errors name the `column`. */
export type ValueErrorKind =
  | 'unknown_category'
  | 'not_a_number'
  | 'non_finite'
  | 'missing_value'
  | 'invalid_value'
  /** A feature named twice in one record, table or CSV header. */
  | 'duplicate_column';

/** `kind` of a row or call that does not fit the model (no `column`). */
export type ShapeErrorKind =
  | 'wrong_feature_count'
  | 'batch_shape'
  | 'unsupported'
  /** No column of a record, table or CSV header is a feature of the model. */
  | 'unknown_columns'
  /** A table or CSV header (or an MLflow request) lacks some of the model's features. */
  | 'missing_columns';

/** `kind` of a request that cannot be read or answered (no `row`, no `column`). */
export type RequestErrorKind =
  | 'malformed_json'
  | 'malformed_csv'
  | 'validation_error'
  | 'too_many_rows'
  | 'explain_too_costly'
  | 'unsupported_media_type'
  | 'not_implemented'
  /** An unknown protocol name. */
  | 'bad_request'
  /** An argument of the wrong JS type (e.g. metadata as an object where its JSON text is asked). */
  | 'invalid_argument';

/** Every `kind` the core throws. */
export type ErrorKind = BundleErrorKind | ValueErrorKind | ShapeErrorKind | RequestErrorKind;

interface InferenceErrorFields<K extends ErrorKind> extends Error {
  /** Machine-readable kind, the HTTP API's `error` field. */
  kind: K;
  /** 0-based row of the request (batches), else null. */
  row: number | null;
  /** The column the error is about, else null. */
  column: string | null;
  /** The HTTP status `trainer serve` answers it with (400, 413, 415, 422, 500, 501). */
  status: number;
}

/** A value error: it names its column. */
export interface ValueError extends InferenceErrorFields<ValueErrorKind> {
  column: string;
}

/** A row or call that does not fit the model. */
export interface ShapeError extends InferenceErrorFields<ShapeErrorKind> {
  column: null;
}

/** A request that cannot be read or answered. */
export interface RequestError extends InferenceErrorFields<RequestErrorKind> {
  row: null;
  column: null;
}

/** A bundle that does not load. */
export interface BundleError extends InferenceErrorFields<BundleErrorKind> {
  row: null;
  column: null;
  status: 500;
}

/**
 * What the core throws: a JS `Error` with the native message (the CLI's and the HTTP API's) and
 * the fields `kind`, `row`, `column` and `status`. Narrow on `kind`:
 * `if (e.kind === 'unknown_category') e.column` is a `string`.
 */
export type InferenceError = ValueError | ShapeError | RequestError | BundleError;

/** Whether `e` is an error the core threw. */
export function isInferenceError(e: unknown): e is InferenceError;

// ---------------------------------------------------------------------------- the model

/** Options of `Model.fromBundle`. */
export interface FromBundleOptions {
  /**
   * `false` skips the weights' sha256 check, for bytes already verified (e.g. fetched with
   * Subresource Integrity). Default `true`.
   */
  verifyHash?: boolean;
}

/** A loaded bundle, ready to predict. Its wasm memory is freed by `free()` (or when collected). */
export class Model {
  private constructor();

  /**
   * Load a self-contained `model.safetensors` (from disk, `GET /api/ml/models/{id}/bundle`, …).
   * Checks the format version, the weights' hash, every tensor and the metadata.
   * @throws {BundleError}
   */
  static fromBundle(bytes: Uint8Array | ArrayBuffer | ArrayBufferView, options?: FromBundleOptions): Model;

  /**
   * Load the weights (`model.safetensors`) with the text of `metadata.json` (the text, not a
   * parsed object: that throws `invalid_argument`).
   * @throws {BundleError}
   */
  static fromParts(weights: Uint8Array | ArrayBuffer | ArrayBufferView, metadataJson: string): Model;

  /**
   * The model a `/api/ml/predict` body names in `model_id`, or `undefined`; for workers that pick
   * a model before predicting. `contentType` defaults to `application/json`.
   * @throws {RequestError} a malformed body (`malformed_json`, `validation_error`, `unsupported_media_type`)
   */
  static modelIdOf(body: Uint8Array, contentType?: string | null): string | undefined;

  /**
   * Predict one row: values in `featureNames` order.
   * @throws {InferenceError} e.g. `wrong_feature_count`, `unknown_category`, `not_a_number`
   */
  predict(features: Cell[]): Prediction;

  /**
   * Predict rows given as objects keyed by column name (absent keys are missing values, but a
   * row must name at least one feature and none twice; other keys are ignored). Errors name the
   * row (from 0).
   */
  predictRecords(records: Array<Record<string, Cell>>): Prediction[];

  /**
   * Numeric-only models, fast: `nRows` rows of `numFeatures` values, row-major, NaN = missing.
   * Returns the probabilities (row-major, `classes.length` per row) or the predicted values.
   * Cells other than numbers, null and undefined throw `not_a_number` naming the row and column.
   * @throws {ShapeError} `unsupported` for models with categorical columns, `batch_shape`
   */
  predictBatch(features: Float64Array | Float32Array | (number | null)[], nRows: number): Float32Array;

  /**
   * Predict every row of CSV text whose header names the columns (matched by name; every
   * feature must be there, once; extra columns ignored). Rows count from 0 in errors.
   */
  predictCsv(text: string): Prediction[];

  /**
   * Answer a whole request body in `protocol` (default `api_ml`) in the shape `trainer serve`
   * answers it, as a parsed object. No row limits apply (the caller pays for its own work; use
   * `handle` for the server's); binary outputs (`binary_data_output`) need `handle`.
   * @throws {InferenceError} with the protocol's `status`
   */
  predictRequest(body: RequestBody, protocol?: 'api_ml'): ApiMlResponse;
  predictRequest(body: RequestBody, protocol: 'kserve_v1' | 'mlflow'): PredictionsResponse;
  predictRequest(body: RequestBody, protocol: 'oip_v2'): OipResponse;
  predictRequest(body: RequestBody, protocol?: Protocol): ApiMlResponse | PredictionsResponse | OipResponse;

  /**
   * The transport-level answer, for servers and edge workers: the request's bytes in, the
   * status, content type and body to send out. Bad requests are answered in the protocol's
   * error shape, never thrown. `maxRows` caps the rows of one request (default 10,000);
   * `jsonHeaderLength` is the request's `Inference-Header-Content-Length` (binary tensors).
   * @throws {RequestError} only for an unknown `protocol` (`bad_request`) or an argument of the
   * wrong type or range (`invalid_argument`: `maxRows` must be a non-negative integer or Infinity)
   */
  handle(
    protocol: Protocol,
    body: Uint8Array | ArrayBuffer | ArrayBufferView | string,
    contentType?: string | null,
    maxRows?: number | null,
    jsonHeaderLength?: number | null,
  ): Reply;

  /** The Open Inference Protocol's model metadata (`GET /v2/models/{m}`), as JSON bytes. */
  oipMetadata(): Uint8Array;

  /**
   * Explain one row: Shapley values of the predicted class's probability (or the value, or the
   * class `options` names), against the bundle's background set. `base_value + Σ values = output`.
   */
  explain(row: Cell[], options: ExplainOptions & { class: 'all' }): Explanation;
  explain(row: Cell[], options?: ExplainOptions): SingleExplanation;

  /** The bundle metadata. */
  metadata(): BundleMetadata;

  /** Feature names, in input order. */
  readonly featureNames: string[];
  /** The number of values a row has. */
  readonly numFeatures: number;
  /** `"classification"` or `"regression"`. */
  readonly taskType: TaskType;
  /** The model id stored in the bundle. */
  readonly modelId: string;

  /** Free the model's wasm memory now; the object is unusable after. */
  free(): void;
}

/**
 * A protocol's error answer for errors the host raises itself (unknown model, body too large,
 * no route): `{status, contentType, body}` in that protocol's shape, e.g.
 * `{"error": kind, "message": message}` for `api_ml`.
 * @throws {RequestError} for an unknown `protocol` (`bad_request`)
 */
export function errorReply(protocol: Protocol, status: number, kind: string, message: string): Reply;
