//! `trainer`: the command line, and the only module that knows clap. Flags become the shared
//! `TrainConfig` (whose defaults the help text shows), commands call the library, and every
//! error is mapped to its exit code once, at the end of `main`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use serde::de::DeserializeOwned;

use inference::config::{
    Activation, Caps, DeviceChoice, EngineChoice, MissingStrategy, OptimizerKind, TaskType, TrainConfig,
};
use inference::Prediction;
use trainer::backend::{BackendConfig, SharedConfig, SharedModels};
use trainer::data::redis::{KeyPattern, RedisLayout, RedisOptions};
use trainer::data::{self, DataContext};
use trainer::error::{ConfigError, DataLoadError, PredictionError, ServeError, TrainingError};
use trainer::pipeline::{self, Event, RunOptions};
use trainer::queue::local::LocalOptions;
use trainer::queue::redis::RedisQueueOptions;
use trainer::redis_pool::RedisLink;
use trainer::server::{Limits, ServerConfig};
use trainer::store::fs::{FsOptions, FsStore};
use trainer::tune::confirm::ConfirmOptions;
use trainer::tune::distributed::Patience;
use trainer::tune::prune::PruningOptions;
use trainer::tune::sampler::SamplerKind;
use trainer::tune::space::SearchSpace;
use trainer::tune::{self, Selection, TuneOptions, TuneProgress};
use trainer::worker::WorkerContext;
use trainer::{crosscheck, predict};

/// `println!` that ends the process quietly when stdout is closed (`trainer predict … | head`).
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = writeln!(std::io::stdout().lock(), $($arg)*) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                std::process::exit(0);
            }
        }
    }};
}

#[derive(Parser)]
#[command(name = "trainer", version, about = "Train tabular MLPs, export prediction bundles, predict and serve them.")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train a model and save its bundle under the models directory.
    Train(TrainArgs),
    /// Predict with a saved model (through the same inference core as the server and wasm).
    Predict(PredictArgs),
    /// Serve the HTTP API (train, status, predict, models, metrics) and the web page.
    Serve(ServeArgs),
    /// Run trainings from the queue shared through Redis (`--redis`), e.g. on a GPU machine.
    Worker(WorkerArgs),
    /// Search hyperparameters (TPE with successive-halving pruning) and save the best model,
    /// with the trial table in its metadata, tuning.csv and tuning.svg.
    Tune(TuneArgs),
    /// Load a dataset and describe its columns (types, missing cells, categories) without training.
    Inspect(InspectArgs),
    /// Load a CSV or JSON file into Redis, for `--data redis:KEY`.
    RedisPut(RedisPutArgs),
    /// Cross-check a saved model on a device: the training engine's eval-mode outputs against
    /// the inference core's predictions, row by row (exit 6 if they differ by more than 1e-5).
    Crosscheck(CrosscheckArgs),
    /// Export a saved model: `onnx` (the whole prediction pipeline as one ONNX graph), or
    /// `background` (the explanation background set as raw CSV rows).
    Export(ExportArgs),
}

#[derive(Args)]
struct ExportArgs {
    /// Model id (under --models-dir) or a model directory.
    #[arg(long)]
    model: String,
    /// Where model ids are looked up.
    #[arg(long, default_value = "models")]
    models_dir: PathBuf,
    /// What to write: onnx | background.
    #[arg(long, value_parser = ["onnx", "background"])]
    format: String,
    /// Output file [default: MODEL_ID.onnx or MODEL_ID.background.csv in the current directory].
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

/// `HELP [default: VALUE]`, from the config struct's own default.
fn with_default(help: &str, value: impl std::fmt::Display) -> String {
    format!("{help} [default: {value}]")
}

fn defaults() -> TrainConfig {
    TrainConfig::default()
}

fn json_name<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

/// Parse a value the way the JSON config spells it (e.g. `leaky_relu`).
fn json_enum<T: DeserializeOwned>(s: &str) -> Result<T, String> {
    serde_json::from_value(serde_json::Value::String(s.to_owned())).map_err(|e| e.to_string())
}

/// Hidden layer widths as one flag value (clap would read a `Vec` as repeated values).
#[derive(Debug, Clone)]
struct Widths(Vec<usize>);

/// `--hidden`: widths like `128,64`, or `none` for no hidden layer (a linear model).
fn hidden_widths(s: &str) -> Result<Widths, String> {
    if s.trim().eq_ignore_ascii_case("none") {
        return Ok(Widths(Vec::new()));
    }
    s.split(',')
        .map(|w| {
            w.trim().parse::<usize>().map_err(|_| format!("`{w}` is not a width: give widths like 128,64, or none"))
        })
        .collect::<Result<_, _>>()
        .map(Widths)
}

#[derive(Args)]
struct TrainArgs {
    /// JSON file with the documented request body (dataset_path, target_column, model_config, train_config, …); flags override it.
    #[arg(long, value_name = "FILE.json")]
    config: Option<PathBuf>,
    /// Dataset: a .csv or .json file, or redis:KEY. Default: the embedded ESG-ratings dataset.
    #[arg(long, value_name = "PATH")]
    data: Option<String>,
    /// Target column (default for the embedded dataset: esg_rating).
    #[arg(long, value_name = "COL")]
    target: Option<String>,
    /// classification | regression (default: guessed from the target and printed).
    #[arg(long, value_parser = json_enum::<TaskType>)]
    task: Option<TaskType>,
    #[arg(long, value_parser = hidden_widths, value_name = "N,N,…|none",
        help = with_default("Hidden layer widths, comma-separated (`none`: a linear model)", format!("{:?}", defaults().model_config.hidden_dims)))]
    hidden: Option<Widths>,
    #[arg(long, help = with_default("Dropout rate after each hidden activation, in [0, 1)", defaults().model_config.dropout_rate))]
    dropout: Option<f64>,
    #[arg(long, value_parser = json_enum::<Activation>,
        help = with_default("relu | gelu | tanh | leaky_relu | sigmoid", defaults().model_config.activation.as_str()))]
    activation: Option<Activation>,
    #[arg(long, help = with_default("Maximum epochs", defaults().train_config.epochs))]
    epochs: Option<usize>,
    #[arg(long, help = with_default("Rows per step, ≥ 2", defaults().train_config.batch_size))]
    batch_size: Option<usize>,
    #[arg(long, help = with_default("Learning rate", defaults().train_config.learning_rate))]
    lr: Option<f64>,
    #[arg(long, value_parser = json_enum::<OptimizerKind>,
        help = with_default("adam | adamw | sgd (momentum 0.9)", json_name(&defaults().train_config.optimizer)))]
    optimizer: Option<OptimizerKind>,
    #[arg(long, help = with_default("Weight decay (L2 for adam/sgd, decoupled for adamw)", defaults().train_config.weight_decay))]
    weight_decay: Option<f64>,
    #[arg(long, help = with_default("Test fraction", defaults().test_size))]
    test_size: Option<f64>,
    #[arg(long, help = with_default("Validation fraction of all rows", defaults().val_size))]
    val_size: Option<f64>,
    #[arg(long, value_parser = json_enum::<MissingStrategy>,
        help = with_default("Missing values: mean | median | mode | drop", json_name(&defaults().missing_strategy)))]
    missing: Option<MissingStrategy>,
    #[arg(long, help = with_default("Early-stopping patience in epochs, 0 = off", defaults().train_config.patience))]
    patience: Option<usize>,
    #[arg(long, help = with_default("Smallest validation-loss improvement that resets patience", defaults().train_config.min_delta))]
    min_delta: Option<f64>,
    #[arg(long, help = with_default("Text columns with more distinct values are dropped", defaults().max_categories))]
    max_categories: Option<usize>,
    #[arg(long, help = with_default("A target with more classes is refused", defaults().max_classes))]
    max_classes: Option<usize>,
    #[arg(long, help = with_default("Seed for split, init, shuffling and dropout", defaults().seed))]
    seed: Option<u64>,
    #[arg(long, value_parser = json_enum::<DeviceChoice>,
        help = with_default("cpu | cuda | auto; cuda needs a build with `--features cuda`", json_name(&defaults().train_config.device)))]
    device: Option<DeviceChoice>,
    #[arg(long, value_parser = json_enum::<EngineChoice>,
        help = with_default("auto | fused | candle (auto: TRAINER_ENGINE, else fused)", json_name(&defaults().train_config.engine)))]
    engine: Option<EngineChoice>,
    /// Stop training after this many seconds (exit 5) [default: no limit].
    #[arg(long, value_name = "S")]
    max_seconds: Option<f64>,
    #[arg(long, help = with_default("Background rows stored for explanations (0: none)", defaults().explain.background_rows))]
    background_rows: Option<usize>,
    #[arg(long, help = with_default("Test rows whose mean |SHAP| gives the model card's global importance (0: skip)", defaults().explain.importance_rows))]
    importance_rows: Option<usize>,
    /// Largest dataset file (or Redis value) read, bytes. JSON takes about 25× its size in memory
    /// while it is read, CSV about 1.1× (the columns as f32).
    #[arg(long, default_value_t = data::DEFAULT_MAX_DATA_BYTES)]
    max_dataset_bytes: u64,
    /// Where model directories are written.
    #[arg(long, default_value = "models")]
    models_dir: PathBuf,
    /// Also write the raw test rows to test_rows.csv in the model directory.
    #[arg(long)]
    save_test_rows: bool,
    /// Also write split.json: the 0-based data rows (file order) of the train, validation and test splits.
    #[arg(long)]
    save_split: bool,
    /// Print one JSON summary object as the last line of stdout.
    #[arg(long)]
    json: bool,
}

impl TrainArgs {
    /// The config file (or defaults) with every given flag applied.
    fn config(&self) -> Result<TrainConfig, TrainingError> {
        let mut c = match &self.config {
            Some(path) => json_arg("--config", path)?,
            None => TrainConfig::default(),
        };
        macro_rules! set {
            ($flag:expr => $($field:tt)+) => { if let Some(v) = $flag.clone() { c.$($field)+ = v; } };
        }
        if self.data.is_some() {
            c.dataset_path = self.data.clone();
        }
        if self.target.is_some() {
            c.target_column = self.target.clone();
        }
        if self.task.is_some() {
            c.task_type = self.task;
        }
        if self.max_seconds.is_some() {
            c.train_config.max_seconds = self.max_seconds;
        }
        set!(self.hidden.as_ref().map(|w| w.0.clone()) => model_config.hidden_dims);
        set!(self.dropout => model_config.dropout_rate);
        set!(self.activation => model_config.activation);
        set!(self.epochs => train_config.epochs);
        set!(self.batch_size => train_config.batch_size);
        set!(self.lr => train_config.learning_rate);
        set!(self.optimizer => train_config.optimizer);
        set!(self.weight_decay => train_config.weight_decay);
        set!(self.patience => train_config.patience);
        set!(self.min_delta => train_config.min_delta);
        set!(self.device => train_config.device);
        set!(self.engine => train_config.engine);
        set!(self.test_size => test_size);
        set!(self.val_size => val_size);
        set!(self.missing => missing_strategy);
        set!(self.max_categories => max_categories);
        set!(self.max_classes => max_classes);
        set!(self.seed => seed);
        set!(self.background_rows => explain.background_rows);
        set!(self.importance_rows => explain.importance_rows);
        Ok(c)
    }
}

#[derive(Args)]
#[command(group = clap::ArgGroup::new("rows").required(true).args(["features", "input"]))]
struct PredictArgs {
    /// Model id (under --models-dir) or a model directory.
    #[arg(long)]
    model: String,
    /// Where model ids are looked up.
    #[arg(long, default_value = "models")]
    models_dir: PathBuf,
    /// One row of raw values in feature order, comma-separated; categories as text, empty = missing.
    #[arg(long, value_name = "v1,v2,…", allow_hyphen_values = true)]
    features: Option<String>,
    /// A CSV file; columns are matched to features by name.
    #[arg(long, value_name = "rows.csv")]
    input: Option<PathBuf>,
    /// One JSON object per row, with the HTTP API's field names.
    #[arg(long)]
    json: bool,
    /// Also explain each prediction: Shapley values per feature (a table, or `explanation` in --json).
    #[arg(long)]
    explain: bool,
    /// With --explain: the class to explain (index or label, or `all`) [default: the predicted class].
    #[arg(long, value_name = "CLASS")]
    explain_class: Option<String>,
    /// With --explain: exact | permutation | auto (exact up to 10 features).
    #[arg(long, value_name = "METHOD", default_value = "auto", value_parser = ["auto", "exact", "permutation"])]
    explain_method: String,
}

#[derive(Args)]
struct CrosscheckArgs {
    /// Model id (under --models-dir) or a model directory.
    #[arg(long)]
    model: String,
    /// Where model ids are looked up.
    #[arg(long, default_value = "models")]
    models_dir: PathBuf,
    /// Rows to compare (CSV or JSON records, columns matched by name) [default: the model's test_rows.csv].
    #[arg(long, value_name = "rows.csv")]
    input: Option<PathBuf>,
    /// Where the training engine runs: cpu | cuda | auto.
    #[arg(long, value_parser = json_enum::<DeviceChoice>, default_value = "cpu")]
    device: DeviceChoice,
    /// Print the result as one JSON object.
    #[arg(long)]
    json: bool,
}

/// `trainer tune`: the train flags give the base config; these the search.
#[derive(Args)]
struct TuneArgs {
    #[command(flatten)]
    base: TrainArgs,
    /// Trials to run.
    #[arg(long, default_value_t = TuneOptions::default().trials)]
    trials: usize,
    /// Start no trial after this many seconds [default: no limit].
    #[arg(long, value_name = "S")]
    budget_seconds: Option<f64>,
    /// JSON search space (overlays the default space; see the README) [default: the default space].
    #[arg(long, value_name = "FILE.json")]
    space: Option<PathBuf>,
    /// Trials at once: threads here (at most the cores), or tasks in flight with --redis.
    #[arg(long, default_value_t = TuneOptions::default().parallel)]
    parallel: usize,
    /// tpe | random.
    #[arg(long, value_parser = json_enum::<SamplerKind>, help = with_default("tpe | random", "tpe"))]
    sampler: Option<SamplerKind>,
    /// Uniform trials before TPE.
    #[arg(long, default_value_t = TuneOptions::default().warmup_trials)]
    warmup_trials: usize,
    /// Turn successive-halving pruning off.
    #[arg(long)]
    no_pruning: bool,
    /// Do not run the base config (the train flags) as trial 0.
    #[arg(long)]
    no_base_trial: bool,
    /// How the winner is chosen: one_se (the base config unless the lowest validation loss
    /// beats it by more than one standard error) | lowest.
    #[arg(long, value_parser = json_enum::<Selection>, help = with_default("one_se | lowest", json_name(&Selection::default())))]
    selection: Option<Selection>,
    /// Before shipping a trial over the base config, check both on this many folds of the train
    /// and validation rows, by the same one-standard-error rule (0: no check).
    #[arg(long, value_name = "K", default_value_t = ConfirmOptions::default().folds)]
    confirm_folds: usize,
    /// Run that check only when the train and validation rows are at most this many.
    #[arg(long, value_name = "ROWS", default_value_t = ConfirmOptions::default().max_rows)]
    confirm_max_rows: usize,
    /// First pruning rung, epochs.
    #[arg(long, default_value_t = PruningOptions::default().min_epochs)]
    min_epochs: usize,
    /// Pruning's η: each rung keeps about 1/η of the trials.
    #[arg(long, default_value_t = PruningOptions::default().reduction_factor)]
    reduction_factor: usize,
    /// Run the trials as tasks on this Redis's shared queue (workers: `trainer worker --redis`);
    /// the winner is published to the shared store.
    #[arg(long, env = "TRAINER_REDIS_URL", value_name = "URL", hide_env_values = true)]
    redis: Option<String>,
    /// Key prefix of the shared deployment.
    #[arg(long, default_value = "trainer:")]
    redis_prefix: String,
    /// With --redis: how long the shared queue may stay unreachable (or full) before the search
    /// fails; trials already on workers go on meanwhile.
    #[arg(long, value_name = "S", default_value_t = Patience::default().outage.as_secs())]
    redis_outage_seconds: u64,
}

/// A JSON file given as a flag (`--config`, `--space`): an argument, not data, so both an
/// unreadable and an invalid file are config errors (exit 2).
fn json_arg<T: serde::de::DeserializeOwned>(flag: &str, path: &std::path::Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new(flag, format!("cannot read {}: {e}", path.display())))?;
    serde_json::from_str(&text).map_err(|e| ConfigError::new(&path.display().to_string(), e.to_string()))
}

impl TuneArgs {
    fn options(&self) -> Result<TuneOptions, TrainingError> {
        let space = match &self.space {
            Some(path) => json_arg("--space", path)?,
            None => SearchSpace::default(),
        };
        let o = TuneOptions {
            trials: self.trials,
            budget_seconds: self.budget_seconds,
            parallel: self.parallel,
            sampler: self.sampler.unwrap_or_default(),
            warmup_trials: self.warmup_trials,
            pruning: PruningOptions {
                enabled: !self.no_pruning,
                min_epochs: self.min_epochs,
                reduction_factor: self.reduction_factor,
            },
            space,
            base_trial: !self.no_base_trial,
            selection: self.selection.unwrap_or_default(),
            confirm: ConfirmOptions { folds: self.confirm_folds, max_rows: self.confirm_max_rows },
        };
        o.check()?;
        Ok(o)
    }
}

#[derive(Args)]
struct InspectArgs {
    /// Dataset: a .csv or .json file, or redis:KEY. Default: the embedded dataset.
    #[arg(long, value_name = "PATH")]
    data: Option<String>,
    /// Largest dataset file (or Redis value) read, bytes.
    #[arg(long, default_value_t = data::DEFAULT_MAX_DATA_BYTES)]
    max_dataset_bytes: u64,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct ServeArgs {
    /// Address to bind; beyond loopback it needs --api-key (or --insecure-no-auth).
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port (0 picks a free one and prints it).
    #[arg(long, default_value_t = 9003)]
    port: u16,
    /// Trainings running at once in this process (in-process workers; 0 = API only); more wait as pending.
    #[arg(long, alias = "max-concurrent-trainings", default_value_t = 1)]
    workers: usize,
    /// Require `Authorization: Bearer KEY` for train, cancel and delete (delete is disabled without it).
    #[arg(long, env = "TRAINER_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Allow binding beyond loopback without --api-key.
    #[arg(long)]
    insecure_no_auth: bool,
    /// Also answer requests whose Host is NAME (repeatable; `*`: any). Bound to loopback, only
    /// loopback names are answered otherwise (against DNS rebinding); give the name a reverse
    /// proxy forwards. Bound beyond loopback, any Host unless this is given.
    #[arg(long = "allowed-host", value_name = "NAME")]
    allowed_hosts: Vec<String>,
    /// Serve the page's files from this directory instead of those built into the binary.
    #[arg(long, value_name = "DIR")]
    web_dir: Option<PathBuf>,
    /// The model MLflow's `POST /invocations` uses [default: the newest loadable model].
    #[arg(long, value_name = "ID")]
    mlflow_model: Option<String>,
    /// Largest request body, bytes.
    #[arg(long, default_value_t = Limits::default().max_body_bytes)]
    max_body_bytes: usize,
    /// Most rows in one predict request (more: 413 too_many_rows).
    #[arg(long, default_value_t = inference::request::DEFAULT_MAX_ROWS)]
    max_batch_rows: usize,
    /// Most rows one predict request may ask explanations for (more: 413 too_many_rows).
    #[arg(long, default_value_t = inference::request::DEFAULT_MAX_EXPLAIN_ROWS)]
    max_explain_rows: usize,
    /// Most features a predict request may ask exact explanations for (2^n coalitions each; more: 422).
    #[arg(long, default_value_t = inference::explain::EXACT_MAX_FEATURES)]
    max_exact_features: usize,
    /// Most network rows one predict request's explanations may evaluate (rows × coalitions or
    /// permutations × background rows; more: 413 explain_too_costly).
    #[arg(long, default_value_t = inference::request::DEFAULT_MAX_EXPLAIN_EVALS)]
    max_explain_evals: u64,
    /// Connections served at once (more wait in the listen backlog).
    #[arg(long, default_value_t = Limits::default().max_connections)]
    max_connections: usize,
    /// Seconds a client has to send its request headers.
    #[arg(long, default_value_t = Limits::default().header_timeout.as_secs_f64())]
    header_timeout: f64,
    /// Seconds a request (body included) may take.
    #[arg(long, default_value_t = Limits::default().request_timeout.as_secs_f64())]
    request_timeout: f64,
    /// Most trials one `POST /api/ml/tune` may ask for (the search also ends at --max-train-seconds).
    #[arg(long, default_value_t = 200)]
    max_trials: usize,
    #[command(flatten)]
    process: ProcessArgs,
}

/// `trainer worker`: trainings from the shared queue.
#[derive(Args)]
struct WorkerArgs {
    /// Train on this device whatever a task asks [default: the task's own `device`].
    #[arg(long, value_parser = json_enum::<DeviceChoice>)]
    device: Option<DeviceChoice>,
    /// Trainings this worker runs at once.
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    #[command(flatten)]
    process: ProcessArgs,
}

/// What `serve` and `worker` share: stores, data, caps and the shared Redis.
#[derive(Args)]
struct ProcessArgs {
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    data: DataArgs,
    #[command(flatten)]
    caps: CapsArgs,
    #[command(flatten)]
    shared: SharedArgs,
}

/// Where models and tasks are kept locally.
#[derive(Args)]
struct StoreArgs {
    /// Where models are saved and loaded (with --redis: the local cache of shared bundles, or
    /// the shared directory itself with --model-store dir).
    #[arg(long, default_value = "models")]
    models_dir: PathBuf,
    /// Trainings that may wait for a worker; more get 429.
    #[arg(long, default_value_t = LocalOptions::default().max_queued)]
    max_queued: usize,
    /// Largest bundle file loaded, bytes.
    #[arg(long, default_value_t = trainer::store::fs::DEFAULT_MAX_BUNDLE_BYTES)]
    max_bundle_bytes: u64,
    /// Memory for loaded models, bytes (least recently used are dropped first).
    #[arg(long, default_value_t = trainer::store::fs::DEFAULT_CACHE_BYTES)]
    model_cache_bytes: u64,
}

/// What trainings may read.
#[derive(Args)]
struct DataArgs {
    /// Train requests may only read dataset files inside this directory (created if absent).
    #[arg(long, default_value = "datasets")]
    data_dir: PathBuf,
    /// Redis keys train requests may read (comma-separated globs; `*` matches any run).
    #[arg(long, default_value = "datasets:*")]
    redis_keys: String,
    /// Largest dataset a training reads, bytes.
    #[arg(long, default_value_t = data::DEFAULT_MAX_DATA_BYTES)]
    max_dataset_bytes: u64,
}

/// Limits on the configs of train requests.
#[derive(Args)]
struct CapsArgs {
    /// Most epochs a train request may ask for.
    #[arg(long, default_value_t = 1000)]
    max_epochs: usize,
    /// Most early-stopping patience a train request may ask for.
    #[arg(long, default_value_t = 100)]
    max_patience: usize,
    /// Longest training of a request, seconds (also its limit when it sets none).
    #[arg(long, default_value_t = 3600.0)]
    max_train_seconds: f64,
    /// Most target classes a train request may have.
    #[arg(long, default_value_t = 1000)]
    max_classes: usize,
}

/// The Redis that servers and workers share (scale-out).
#[derive(Args)]
struct SharedArgs {
    /// Share tasks, status and models through this Redis (`redis://[:password@]host:port[/db]`).
    /// Without it, this process keeps everything itself.
    #[arg(long, env = "TRAINER_REDIS_URL", value_name = "URL", hide_env_values = true)]
    redis: Option<String>,
    /// Prefix of every key this deployment writes (wrap it in {…} for Redis Cluster slots).
    #[arg(long, default_value = "trainer:")]
    redis_prefix: String,
    /// With --redis, where models live: `redis` (bundles in Redis, cached and verified on each
    /// machine) or `dir` (--models-dir is a shared directory; ids still come from Redis).
    #[arg(long, default_value = "redis", value_parser = ["redis", "dir"])]
    model_store: String,
    /// Seconds without a heartbeat after which another worker takes a running task.
    #[arg(long, default_value_t = RedisQueueOptions::default().claim_after.as_secs_f64())]
    claim_after: f64,
    /// Deliveries of one task before it fails as `worker_lost`.
    #[arg(long, default_value_t = RedisQueueOptions::default().max_attempts)]
    max_attempts: u32,
    /// Seconds finished task records are kept.
    #[arg(long, default_value_t = RedisQueueOptions::default().ttl.as_secs_f64())]
    task_ttl: f64,
    /// Largest bundle stored in Redis, bytes (bigger: use --model-store dir).
    #[arg(long, default_value_t = trainer::store::redis::DEFAULT_MAX_REDIS_BUNDLE_BYTES)]
    redis_max_bundle_bytes: u64,
    /// Seconds a Redis command may take (connect, read, write).
    #[arg(long, default_value_t = 5.0)]
    redis_timeout: f64,
}

impl StoreArgs {
    fn backend(&self, shared: &SharedArgs) -> Result<BackendConfig, ServeError> {
        Ok(BackendConfig {
            models_dir: self.models_dir.clone(),
            max_bundle_bytes: self.max_bundle_bytes,
            cache_bytes: self.model_cache_bytes,
            max_queued: self.max_queued,
            shared: shared.config()?,
        })
    }
}

impl SharedArgs {
    fn config(&self) -> Result<Option<SharedConfig>, ServeError> {
        let Some(url) = &self.redis else { return Ok(None) };
        Ok(Some(SharedConfig {
            link: RedisLink {
                url: url.clone(),
                prefix: self.redis_prefix.clone(),
                timeout: secs("redis-timeout", self.redis_timeout)?,
            },
            models: if self.model_store == "dir" { SharedModels::Dir } else { SharedModels::Redis },
            queue: RedisQueueOptions {
                claim_after: secs("claim-after", self.claim_after)?,
                max_attempts: self.max_attempts.max(1),
                ttl: secs("task-ttl", self.task_ttl)?,
                ..RedisQueueOptions::default()
            },
            max_redis_bundle_bytes: self.redis_max_bundle_bytes,
        }))
    }
}

impl DataArgs {
    /// How trainings read data; `redis:KEY` datasets come from `REDIS_URL`, else the shared Redis.
    fn run_options(&self, shared: &SharedArgs) -> Result<RunOptions, ServeError> {
        std::fs::create_dir_all(&self.data_dir)?;
        let mut redis = RedisOptions::default();
        let env_url = std::env::var("REDIS_URL").is_ok();
        if let (false, Some(url)) = (env_url, &shared.redis) {
            redis.url = url.clone();
        }
        // No Redis named (neither REDIS_URL nor --redis): read none, rather than whatever
        // answers on localhost.
        let keys = if env_url || shared.redis.is_some() { self.redis_keys.as_str() } else { "" };
        let patterns = KeyPattern::parse(keys);
        if !env_url && shared.redis.is_some() {
            // Datasets come from the shared Redis: its task and model keys must stay out of reach.
            for own in ["task:x", "model:x", "tasks"] {
                let key = format!("{}{own}", shared.redis_prefix);
                if patterns.matches(&key) {
                    return Err(ServeError::Config(format!(
                        "--redis-keys {patterns} matches this deployment's own keys (e.g. {key}): \
                         choose dataset keys outside --redis-prefix {:?}",
                        shared.redis_prefix
                    )));
                }
            }
        }
        Ok(RunOptions {
            data: DataContext {
                data_dir: Some(self.data_dir.clone()),
                redis,
                redis_keys: Some(patterns),
                max_bytes: self.max_dataset_bytes,
            },
            save_test_rows: false,
            save_split: false,
        })
    }
}

impl CapsArgs {
    fn caps(&self) -> Caps {
        Caps {
            max_epochs: self.max_epochs,
            max_patience: self.max_patience,
            max_seconds: Some(self.max_train_seconds).filter(|s| s.is_finite() && *s > 0.0),
            max_classes: self.max_classes,
        }
    }
}

#[derive(Args)]
struct RedisPutArgs {
    /// Redis key to write.
    key: String,
    /// CSV or JSON file to load.
    file: PathBuf,
    /// Storage layout: string (JSON records), list (one JSON record per element) or hash (column → JSON array).
    #[arg(long = "as", default_value = "string", value_parser = ["string", "list", "hash"])]
    layout: String,
}

fn progress_bar(total: usize) -> ProgressBar {
    let bar = ProgressBar::new(total as u64);
    bar.set_style(
        ProgressStyle::with_template("{spinner} epoch {pos}/{len} [{bar:30}] {msg} ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

fn epoch_message(r: &inference::record::EpochRecord) -> String {
    let mut s = format!("loss {:.4}", r.train_loss);
    if let Some(v) = r.val_loss {
        s.push_str(&format!(" val_loss {v:.4}"));
    }
    if let Some(v) = r.val_accuracy {
        s.push_str(&format!(" val_acc {v:.4}"));
    }
    if let Some(v) = r.val_r2 {
        s.push_str(&format!(" val_r2 {v:.4}"));
    }
    s
}

fn cli_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread().enable_all().build()
}

fn run_train(args: &TrainArgs) -> Result<(), TrainingError> {
    let cfg = args.config()?;
    let checked = cfg.check()?;
    let opts = RunOptions {
        data: DataContext {
            redis: RedisOptions::from_config(checked.config().redis.as_ref()),
            max_bytes: args.max_dataset_bytes,
            ..DataContext::default()
        },
        save_test_rows: args.save_test_rows,
        save_split: args.save_split,
    };
    // Before training: an unusable models directory should not cost a training run.
    let store = FsStore::open_dir(&args.models_dir, FsOptions::default())
        .map_err(|e| trainer::error::StoreError::Backend(format!("{}: {e}", args.models_dir.display())))?;
    let interactive = std::io::stderr().is_terminal();
    let total = checked.config().train_config.epochs;
    let mut bar: Option<ProgressBar> = None;
    let cancel = AtomicBool::new(false);
    let result = pipeline::run(
        &checked,
        &opts,
        &mut |event| match event {
            Event::Prepared { prepared, task_guessed, device } => {
                let d = &prepared.dataset;
                eprintln!(
                    "data: {} ({} rows, {} features; train {} / val {} / test {}; dropped {} rows)",
                    d.source,
                    d.rows,
                    prepared.n_features(),
                    d.train_rows,
                    d.val_rows,
                    d.test_rows,
                    d.dropped_rows
                );
                let how = if task_guessed { " (guessed from the target; set --task to override)" } else { "" };
                eprintln!("task: {}{how}; target: {}; device: {device}", prepared.task.as_str(), d.target_column);
                for w in &prepared.warnings {
                    eprintln!("warning: {w}");
                }
                if d.test_rows == 0 {
                    eprintln!("warning: {}", pipeline::NO_TEST_ROWS);
                }
                if interactive {
                    bar = Some(progress_bar(total));
                }
            }
            Event::Epoch { record, total_epochs } => match &bar {
                Some(b) => {
                    b.set_position(record.epoch as u64);
                    b.set_message(epoch_message(record));
                }
                None => eprintln!("epoch {}/{total_epochs}: {}", record.epoch, epoch_message(record)),
            },
        },
        &cancel,
    );
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let trained = result?;
    let samples_per_second = trained.samples_per_second;
    let rt = cli_runtime().map_err(|e| TrainingError::Engine(e.to_string()))?;
    let m = rt.block_on(trainer::export::publish(&store, trained))?;
    let model_dir = store.model_dir(&trainer::store::ModelId::parse(&m.model_id)?);
    out!("model {} saved to {}", m.model_id, model_dir.display());
    out!(
        "epochs run: {} (best {}), {:.1} s, {:.0} samples/s",
        m.epochs_run,
        m.best_epoch,
        m.train_seconds,
        samples_per_second
    );
    out!("test metrics: {}", serde_json::to_string(&m.test_metrics).unwrap_or_default());
    if args.json {
        let summary = serde_json::json!({
            "model_id": m.model_id,
            "model_dir": model_dir,
            "task_type": m.task_type,
            "test_metrics": m.test_metrics,
            "epochs_run": m.epochs_run,
            "best_epoch": m.best_epoch,
            "train_seconds": m.train_seconds,
            "samples_per_second": samples_per_second,
        });
        out!("{summary}");
    }
    Ok(())
}

fn trial_line(p: &TuneProgress) -> String {
    let best = match (p.best_val_loss, p.best_trial, &p.selected_by) {
        (Some(l), Some(t), Some(why)) => format!("winner val_loss {l:.4} (trial {t}, by {why})"),
        (Some(l), Some(t), None) => format!("best val_loss {l:.4} (trial {t})"),
        _ => "no completed trial yet".into(),
    };
    format!("trial {}/{}: {best}; {} pruned, {} failed", p.trials_done, p.trials, p.pruned, p.failed)
}

fn run_tune(args: &TuneArgs) -> Result<(), TrainingError> {
    let options = args.options()?;
    let checked = args.base.config()?.check()?;
    let caps = Caps::default();
    options.space.check_against(checked.config(), &caps)?;
    let rt = cli_runtime().map_err(|e| TrainingError::Engine(e.to_string()))?;
    let started = std::time::Instant::now();
    let (record, model_id, model_dir, test_metrics) = match &args.redis {
        None => {
            let opts = RunOptions {
                data: DataContext {
                    redis: RedisOptions::from_config(checked.config().redis.as_ref()),
                    max_bytes: args.base.max_dataset_bytes,
                    ..DataContext::default()
                },
                save_test_rows: args.base.save_test_rows,
                save_split: args.base.save_split,
            };
            let data = pipeline::prepare(&checked, &opts)?;
            let d = &data.prepared.dataset;
            eprintln!(
                "data: {} ({} rows; train {} / val {} / test {})",
                d.source, d.rows, d.train_rows, d.val_rows, d.test_rows
            );
            eprintln!("searching: {} trials, {} at once", options.trials, options.parallel);
            let cancel = AtomicBool::new(false);
            let (mut record, winner) =
                tune::search(&checked, &options, &caps, &data, &|p| eprintln!("{}", trial_line(p)), &cancel)?;
            let rows = tune::check_rows(&data);
            if tune::confirm::wanted(&record, rows) {
                eprintln!(
                    "checking trial {} against the base config over {} folds of {rows} rows",
                    record.best_trial, options.confirm.folds
                );
            }
            let winner = tune::settle(&mut record, Some(&checked), winner, &data, &caps, &opts, &cancel)?;
            let out = tune::ship(&record, winner, &data, &caps, &opts, &mut |_, _| {}, &cancel)?;
            eprintln!(
                "winner: trial {} (val_loss {:.4}; {}); trained again to save it",
                record.best_trial, record.best_val_loss, record.selected_by
            );
            let store = FsStore::open_dir(&args.base.models_dir, FsOptions::default())
                .map_err(|e| trainer::error::StoreError::Backend(format!("{}: {e}", args.base.models_dir.display())))?;
            let m = rt.block_on(trainer::export::publish(&store, out))?;
            let dir = store.model_dir(&trainer::store::ModelId::parse(&m.model_id)?);
            (record, m.model_id.clone(), Some(dir), serde_json::to_value(&m.test_metrics).unwrap_or_default())
        }
        Some(url) => {
            let link =
                RedisLink { url: url.clone(), prefix: args.redis_prefix.clone(), timeout: Duration::from_secs(5) };
            let pool = trainer::redis_pool::Pool::new(link).map_err(TrainingError::Engine)?;
            let queue = trainer::queue::redis::RedisQueue::new(
                pool,
                RedisQueueOptions { max_queued: 10_000, ..RedisQueueOptions::default() },
            );
            eprintln!(
                "searching on {}: {} trials, {} in flight",
                trainer::redis_pool::redact(url),
                options.trials,
                options.parallel
            );
            let patience = Patience { outage: Duration::from_secs(args.redis_outage_seconds), ..Patience::default() };
            let (record, done) = rt.block_on(async {
                // Ctrl-C (or SIGTERM) cancels the trials in flight rather than leave them queued.
                let stop = trainer::server::shutdown_signal();
                tune::distributed::search(
                    &queue,
                    checked.config(),
                    &options,
                    patience,
                    &|p| eprintln!("{}", trial_line(p)),
                    &|n| eprintln!("{n}"),
                    stop,
                )
                .await
            })?;
            let id = done.model_id.clone().unwrap_or_default();
            (record, id, None, done.test_metrics.clone().unwrap_or_default())
        }
    };
    let best = record.trials.iter().find(|t| t.number == record.best_trial);
    let progress = TuneProgress::concluded(&record, tune::TuneStage::Finished);
    match &model_dir {
        Some(dir) => out!("model {model_id} saved to {}", dir.display()),
        None => out!("model {model_id} published to the shared store"),
    }
    out!("{}; stopped by {}; {:.1} s", trial_line(&progress), record.stopped_by, started.elapsed().as_secs_f64());
    out!("best params: {}", best.map(|b| b.params.to_string()).unwrap_or_default());
    out!("test metrics: {test_metrics}");
    if args.base.json {
        let summary = serde_json::json!({
            "model_id": model_id,
            "model_dir": model_dir,
            "trials": progress.trials_done,
            "pruned": progress.pruned,
            "failed": progress.failed,
            "best_trial": record.best_trial,
            "best_val_loss": record.best_val_loss,
            "best_params": best.map(|b| b.params.clone()),
            "lowest_trial": record.lowest_trial,
            "selected_by": record.selected_by,
            "test_metrics": test_metrics,
            "search_seconds": record.seconds,
            "stopped_by": record.stopped_by,
        });
        out!("{summary}");
    }
    Ok(())
}

fn print_prediction(p: &Prediction, json: bool, row: Option<usize>) {
    if json {
        out!("{}", inference::request::prediction_json(p));
        return;
    }
    let prefix = row.map(|r| format!("row {r}: ")).unwrap_or_default();
    match p {
        Prediction::Class { predicted_label, confidence, .. } => {
            out!("{prefix}{predicted_label} (confidence {confidence:.4})")
        }
        Prediction::Value { predicted_value } => out!("{prefix}{predicted_value}"),
    }
}

fn run_predict(args: &PredictArgs) -> Result<(), PredictionError> {
    let loaded = predict::load_model(&args.models_dir, &args.model)?;
    let model = &loaded.model;
    let (rows, numbered) = match (&args.features, &args.input) {
        (Some(line), _) => (predict::feature_line_rows(model, line)?, false),
        (None, Some(path)) => (predict::csv_file_rows(model, path)?, true),
        (None, None) => return Err(PredictionError::Usage("give --features or --input".into())),
    };
    let preds = predict::predict(model, &rows);
    let explanations = if args.explain {
        let opts = explain_options(args, model)?;
        predict::explain(model, &rows, &opts)
    } else {
        Vec::new()
    };
    let table = std::io::stdout().is_terminal() && !args.json;
    for (i, p) in preds.iter().enumerate() {
        let row = numbered.then_some(i + 1);
        match (explanations.get(i), args.json) {
            (Some(e), true) => {
                let line = inference::request::prediction_json(p);
                let e = inference::request::explanation_json(model, e);
                out!("{},\"explanation\":{e}}}", &line[..line.len() - 1]);
            }
            (Some(e), false) => {
                print_prediction(p, false, row);
                print_explanation(model, e, table);
            }
            (None, json) => print_prediction(p, json, row),
        }
    }
    Ok(())
}

fn explain_options(
    args: &PredictArgs,
    model: &inference::Model,
) -> Result<inference::explain::Options, PredictionError> {
    use inference::explain::{Method, Options, Target};
    let target = match args.explain_class.as_deref() {
        None => Target::Predicted,
        Some("all") => Target::All,
        Some(c) => match (c.parse::<usize>(), model.classes().and_then(|l| l.iter().position(|x| x == c))) {
            (_, Some(i)) => Target::Class(i),
            (Ok(i), None) if i < model.output_width() => Target::Class(i),
            _ => return Err(PredictionError::Usage(format!("--explain-class {c:?}: no such class"))),
        },
    };
    let method = match args.explain_method.as_str() {
        "exact" => Method::Exact,
        "permutation" => Method::Permutation,
        _ => Method::Auto,
    };
    inference::explain::check_method(method, model.num_features(), inference::explain::EXACT_LIMIT)
        .map_err(|m| PredictionError::Usage(format!("--explain-method: {m}")))?;
    Ok(Options { target, method, ..Options::default() })
}

/// Contributions, largest first, as a bar chart on a terminal (or plain lines otherwise).
fn print_explanation(model: &inference::Model, e: &inference::explain::Explanation, bars: bool) {
    let names = model.feature_names();
    for o in &e.outputs {
        let what = match (o.class, model.classes()) {
            (Some(c), Some(l)) => format!("P({})", l[c]),
            _ => "value".to_owned(),
        };
        out!("  {what} = {:.4}: base {:.4} + contributions ({}):", o.output, o.base_value, e.method.as_str());
        let mut order: Vec<usize> = (0..names.len()).collect();
        order.sort_by(|&a, &b| o.values[b].abs().total_cmp(&o.values[a].abs()));
        let widest = o.values.iter().fold(0f64, |m, v| m.max(v.abs())).max(1e-12);
        for j in order {
            let v = o.values[j];
            let bar = if bars {
                let n = ((v.abs() / widest) * 30.0).round() as usize;
                format!(" {}", if v >= 0.0 { "+".repeat(n) } else { "-".repeat(n) })
            } else {
                String::new()
            };
            out!("    {:<28} {v:+.4}{bar}", names[j]);
        }
    }
}

fn run_crosscheck(args: &CrosscheckArgs) -> Result<(), PredictionError> {
    let dir = if args.model.contains('/') || PathBuf::from(&args.model).join("model.safetensors").exists() {
        PathBuf::from(&args.model)
    } else {
        args.models_dir.join(trainer::store::ModelId::parse(&args.model)?.as_str())
    };
    let loaded = trainer::store::fs::load_dir(&dir, trainer::store::fs::DEFAULT_MAX_BUNDLE_BYTES)?;
    let input = args.input.clone().unwrap_or_else(|| dir.join(pipeline::TEST_ROWS_FILE));
    let rows = std::fs::read(&input).map_err(|source| DataLoadError::Io { path: input.clone(), source })?;
    let (device, name) = trainer::device::select(args.device)?;
    let c = crosscheck::run(&loaded.bytes, &rows, &device)?;
    if args.json {
        out!("{}", serde_json::to_string(&c).unwrap_or_default());
    } else {
        out!(
            "{}: {} rows, engine {} on {name} vs the inference core: max |Δ| {:.3e}, {} class disagreements ({})",
            c.model_id,
            c.rows,
            c.engine,
            c.max_abs_diff,
            c.class_disagreements,
            if c.ok { "OK" } else { "MISMATCH" }
        );
    }
    if c.ok {
        Ok(())
    } else {
        Err(PredictionError::Mismatch {
            max_abs_diff: c.max_abs_diff,
            tolerance: c.tolerance,
            class_disagreements: c.class_disagreements,
        })
    }
}

fn run_export(args: &ExportArgs) -> Result<(), PredictionError> {
    let loaded = predict::load_model(&args.models_dir, &args.model)?;
    let (bytes, ext) = match args.format.as_str() {
        "background" => (background_csv(&loaded.model)?, "background.csv"),
        _ => (trainer::onnx::export(&loaded.model), "onnx"),
    };
    let out = args.out.clone().unwrap_or_else(|| PathBuf::from(format!("{}.{ext}", loaded.model.id())));
    let io = |source| PredictionError::Write { path: out.clone(), source };
    // Written whole or not at all.
    let tmp = out.with_extension(format!("onnx.tmp-{}", std::process::id()));
    std::fs::write(&tmp, &bytes).and_then(|()| std::fs::rename(&tmp, &out)).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io(e)
    })?;
    match ext {
        "onnx" => out!(
            "wrote {} ({} bytes, opset {} + ai.onnx.ml {})",
            out.display(),
            bytes.len(),
            trainer::onnx::OPSET,
            trainer::onnx::ML_OPSET
        ),
        _ => out!("wrote {} ({} bytes)", out.display(), bytes.len()),
    }
    Ok(())
}

/// The stored background set as CSV of raw values (features in order, a header row).
fn background_csv(model: &inference::Model) -> Result<Vec<u8>, PredictionError> {
    let bg = model.background().ok_or_else(|| {
        PredictionError::Usage(format!(
            "model {} stores no background set (format 1, or background_rows 0)",
            model.id()
        ))
    })?;
    let n = model.num_features();
    let mut w = csv::Writer::from_writer(Vec::new());
    let fail = |e: &dyn std::fmt::Display| PredictionError::Usage(format!("cannot write the CSV: {e}"));
    w.write_record(model.feature_names()).map_err(|e| fail(&e))?;
    for row in bg.chunks_exact(n) {
        let cells = row.iter().enumerate().map(|(j, &x)| match model.preprocessor().raw_value(j, x) {
            inference::Value::Number(v) => format!("{}", v as f32),
            inference::Value::Text(t) => t,
            inference::Value::Missing => String::new(),
        });
        w.write_record(cells).map_err(|e| fail(&e))?;
    }
    w.into_inner().map_err(|e| fail(&e))
}

fn run_inspect(args: &InspectArgs) -> Result<(), DataLoadError> {
    let source = match args.data.as_deref() {
        None => inference::config::DataSource::Embedded,
        Some(s) => match s.strip_prefix("redis:") {
            Some(k) => inference::config::DataSource::Redis(k.to_owned()),
            None => inference::config::DataSource::File(s.to_owned()),
        },
    };
    let table = data::load(&source, &DataContext { max_bytes: args.max_dataset_bytes, ..DataContext::default() })?;
    let summary = data::describe(&table);
    if args.json {
        out!("{}", serde_json::to_string(&summary).unwrap_or_default());
    } else {
        out!("{} rows, {} columns", table.n_rows(), table.columns.len());
        for c in &summary.columns {
            let distinct = c.distinct.map(|d| format!(", {d} distinct")).unwrap_or_default();
            out!("  {:<32} {:<11} {} missing{distinct}", c.name, c.kind, c.missing);
        }
    }
    Ok(())
}

fn run_redis_put(args: &RedisPutArgs) -> Result<(), DataLoadError> {
    let table = data::load_file(&args.file)?;
    let layout = match args.layout.as_str() {
        "list" => RedisLayout::List,
        "hash" => RedisLayout::Hash,
        _ => RedisLayout::String,
    };
    let rows = data::redis::put(&args.key, &table, layout, &RedisOptions::default())?;
    out!("stored {rows} rows at redis key {} as a {}", args.key, args.layout);
    Ok(())
}

fn secs(flag: &str, s: f64) -> Result<Duration, ServeError> {
    Duration::try_from_secs_f64(s)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| ServeError::Config(format!("--{flag} must be a positive number of seconds, got {s}")))
}

fn run_serve(a: &ServeArgs) -> Result<(), ServeError> {
    let config = ServerConfig {
        host: a.host.clone(),
        port: a.port,
        api_key: a.api_key.clone(),
        insecure_no_auth: a.insecure_no_auth,
        allowed_hosts: a.allowed_hosts.clone(),
        web_dir: a.web_dir.clone(),
        mlflow_model: a.mlflow_model.clone(),
        run: a.process.data.run_options(&a.process.shared)?,
        caps: a.process.caps.caps(),
        limits: Limits {
            max_body_bytes: a.max_body_bytes,
            request: inference::request::Limits {
                max_rows: a.max_batch_rows.max(1),
                max_explain_rows: a.max_explain_rows,
                max_exact_features: a.max_exact_features,
                max_explain_evals: a.max_explain_evals,
            },
            max_connections: a.max_connections.max(1),
            header_timeout: secs("header-timeout", a.header_timeout)?,
            request_timeout: secs("request-timeout", a.request_timeout)?,
            ..Limits::default()
        },
        workers: a.workers,
        max_trials: a.max_trials,
    };
    trainer::server::check_security(&config)?;
    let backend = trainer::backend::open(&a.process.store.backend(&a.process.shared)?)?;
    trainer::server::run(config, backend)
}

fn run_worker(a: &WorkerArgs) -> Result<(), ServeError> {
    if a.process.shared.redis.is_none() {
        return Err(ServeError::Config(
            "a worker takes its tasks from a shared queue: give --redis URL (or TRAINER_REDIS_URL)".into(),
        ));
    }
    let backend = trainer::backend::open(&a.process.store.backend(&a.process.shared)?)?;
    let ctx = WorkerContext {
        queue: backend.queue,
        store: backend.store,
        redis: backend.redis,
        run: a.process.data.run_options(&a.process.shared)?,
        caps: a.process.caps.caps(),
        device: a.device,
        on_finished: Arc::new(|_| {}),
    };
    Ok(trainer::worker::run_process(ctx, a.concurrency)?)
}

/// `family: message` and the exit code of an error.
fn failure<E: trainer::error::ExitCode + std::fmt::Display>(e: E) -> (u8, String) {
    (e.exit_code(), format!("{}: {e}", e.family()))
}

fn main() -> ExitCode {
    // candle's CPU thread pool spins on small matrices; one thread is faster unless told otherwise.
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        std::env::set_var("RAYON_NUM_THREADS", "1");
    }
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        // Colours only on a terminal: log files stay plain, and every request's span is
        // formatted without escape codes (they were 2% of a predict's cycles).
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let outcome: Result<(), (u8, String)> = match &cli.command {
        Command::Train(a) => run_train(a).map_err(failure),
        Command::Predict(a) => run_predict(a).map_err(failure),
        Command::Serve(a) => run_serve(a).map_err(failure),
        Command::Worker(a) => run_worker(a).map_err(failure),
        Command::Tune(a) => run_tune(a).map_err(failure),
        Command::Crosscheck(a) => run_crosscheck(a).map_err(failure),
        Command::Export(a) => run_export(a).map_err(failure),
        Command::Inspect(a) => run_inspect(a).map_err(failure),
        Command::RedisPut(a) => run_redis_put(a).map_err(failure),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, msg)) => {
            eprintln!("error: {msg}");
            ExitCode::from(code)
        }
    }
}
