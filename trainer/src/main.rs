//! `trainer`: the command line. Parses flags into the shared `TrainConfig`, runs the
//! pipeline, predicts through the inference core, and maps errors to exit codes.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use serde::de::DeserializeOwned;

use inference::config::{Activation, DeviceChoice, MissingStrategy, OptimizerKind, TaskType, TrainConfig};
use inference::Prediction;
use trainer::data::redis::{RedisLayout, RedisOptions};
use trainer::error::{ConfigError, DataLoadError, PredictionError, TrainingError};
use trainer::pipeline::{self, Event, RunOptions};
use trainer::server::ServerConfig;
use trainer::{data, predict};

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
#[command(
    name = "trainer",
    version,
    about = "Train tabular MLPs (candle), export prediction bundles, predict and serve them."
)]
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
    /// Load a dataset and describe its columns (types, missing cells, categories) without training.
    Inspect(InspectArgs),
    /// Load a CSV or JSON file into Redis, for `--data redis:KEY`.
    RedisPut(RedisPutArgs),
    /// Cross-check a saved model on a device: the training engine's eval-mode outputs against
    /// the inference core's predictions, row by row (exit 6 if they differ by more than 1e-5).
    Crosscheck(CrosscheckArgs),
}

#[derive(Args)]
struct InspectArgs {
    /// Dataset: a .csv or .json file, or redis:KEY. Default: the embedded dataset.
    #[arg(long, value_name = "PATH")]
    data: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// Parse a value the way the JSON config spells it (e.g. `leaky_relu`).
fn json_enum<T: DeserializeOwned>(s: &str) -> Result<T, String> {
    serde_json::from_value(serde_json::Value::String(s.to_owned())).map_err(|e| e.to_string())
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
    /// Hidden layer widths, comma-separated [default: 128,64,32].
    #[arg(long, value_delimiter = ',', value_name = "N,N,…")]
    hidden: Option<Vec<usize>>,
    /// Dropout rate after each hidden activation, in [0, 1) [default: 0.2].
    #[arg(long)]
    dropout: Option<f64>,
    /// relu | gelu | tanh | leaky_relu | sigmoid [default: relu].
    #[arg(long, value_parser = json_enum::<Activation>)]
    activation: Option<Activation>,
    /// Maximum epochs [default: 100].
    #[arg(long)]
    epochs: Option<usize>,
    /// Rows per step, ≥ 2 [default: 32].
    #[arg(long)]
    batch_size: Option<usize>,
    /// Learning rate [default: 0.001].
    #[arg(long)]
    lr: Option<f64>,
    /// adam | adamw | sgd (momentum 0.9) [default: adam].
    #[arg(long, value_parser = json_enum::<OptimizerKind>)]
    optimizer: Option<OptimizerKind>,
    /// Weight decay (L2 for adam/sgd, decoupled for adamw) [default: 0].
    #[arg(long)]
    weight_decay: Option<f64>,
    /// Test fraction [default: 0.2].
    #[arg(long)]
    test_size: Option<f64>,
    /// Validation fraction of all rows [default: 0.1].
    #[arg(long)]
    val_size: Option<f64>,
    /// Missing values: mean | median | mode | drop [default: mean].
    #[arg(long, value_parser = json_enum::<MissingStrategy>)]
    missing: Option<MissingStrategy>,
    /// Early-stopping patience in epochs, 0 = off [default: 10].
    #[arg(long)]
    patience: Option<usize>,
    /// Smallest validation-loss improvement that resets patience [default: 0].
    #[arg(long)]
    min_delta: Option<f64>,
    /// Text columns with more distinct values are dropped [default: 1000].
    #[arg(long)]
    max_categories: Option<usize>,
    /// Seed for split, init, shuffling and dropout [default: 42].
    #[arg(long)]
    seed: Option<u64>,
    /// cpu | cuda | auto [default: cpu]; cuda needs a build with `--features cuda`.
    #[arg(long, value_parser = json_enum::<DeviceChoice>)]
    device: Option<DeviceChoice>,
    /// Where model directories are written.
    #[arg(long, default_value = "models")]
    models_dir: PathBuf,
    /// Also write the raw test rows to test_rows.csv in the model directory.
    #[arg(long)]
    save_test_rows: bool,
    /// Print one JSON summary object as the last line of stdout.
    #[arg(long)]
    json: bool,
}

impl TrainArgs {
    /// The config file (or defaults) with every given flag applied.
    fn config(&self) -> Result<TrainConfig, TrainingError> {
        let mut c = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|source| TrainingError::Data(DataLoadError::Io { path: path.clone(), source }))?;
                serde_json::from_str(&text)
                    .map_err(|e| ConfigError { field: path.display().to_string(), message: e.to_string() })?
            }
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
        set!(self.hidden => model_config.hidden_dims);
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
        set!(self.test_size => test_size);
        set!(self.val_size => val_size);
        set!(self.missing => missing_strategy);
        set!(self.max_categories => max_categories);
        set!(self.seed => seed);
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
}

#[derive(Args)]
struct CrosscheckArgs {
    /// Model id (under --models-dir) or a model directory.
    #[arg(long)]
    model: String,
    /// Where model ids are looked up.
    #[arg(long, default_value = "models")]
    models_dir: PathBuf,
    /// Rows to compare (CSV or JSON, columns matched by name) [default: the model's test_rows.csv].
    #[arg(long, value_name = "rows.csv")]
    input: Option<PathBuf>,
    /// Where the training engine runs: cpu | cuda | auto [default: cpu].
    #[arg(long, value_parser = json_enum::<DeviceChoice>, default_value = "cpu")]
    device: DeviceChoice,
    /// Print the result as one JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct ServeArgs {
    /// Address to bind; binding beyond loopback without --api-key prints a warning.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port (0 picks a free one and prints it).
    #[arg(long, default_value_t = 9003)]
    port: u16,
    /// Where models are saved and loaded.
    #[arg(long, default_value = "models")]
    models_dir: PathBuf,
    /// Relative dataset_path values of train requests resolve inside this directory.
    #[arg(long, default_value = ".")]
    data_dir: PathBuf,
    /// Trainings running at once; more requests wait as pending.
    #[arg(long, default_value_t = 1)]
    max_concurrent_trainings: usize,
    /// Require `Authorization: Bearer KEY` for train and delete (delete is disabled without it).
    #[arg(long, env = "TRAINER_API_KEY")]
    api_key: Option<String>,
    /// Static files served at / (the prediction page).
    #[arg(long, default_value = "web")]
    web_dir: PathBuf,
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

/// Process exit codes, one per error family (documented in the README).
fn exit_code(e: &TrainingError) -> u8 {
    match e {
        TrainingError::Config(_) => 2,
        TrainingError::Data(_) => 3,
        _ => 5,
    }
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

fn epoch_message(r: &inference::metadata::EpochRecord) -> String {
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

fn run_train(args: &TrainArgs) -> Result<(), TrainingError> {
    let cfg = args.config()?;
    let opts = RunOptions {
        models_dir: args.models_dir.clone(),
        redis: RedisOptions::default(),
        save_test_rows: args.save_test_rows,
        data_dir: None,
    };
    let interactive = std::io::stderr().is_terminal();
    let mut bar: Option<ProgressBar> = None;
    let cancel = AtomicBool::new(false);
    let result = pipeline::run(
        &cfg,
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
                if interactive {
                    bar = Some(progress_bar(cfg.train_config.epochs));
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
    let r = result?;
    let m = &r.metadata;
    out!("model {} saved to {}", m.model_id, r.model_dir.display());
    out!(
        "epochs run: {} (best {}), {:.1} s, {:.0} samples/s",
        m.epochs_run,
        m.best_epoch,
        m.train_seconds,
        r.samples_per_second
    );
    out!("test metrics: {}", serde_json::to_string(&m.test_metrics).unwrap_or_default());
    if args.json {
        let summary = serde_json::json!({
            "model_id": m.model_id,
            "model_dir": r.model_dir,
            "task_type": m.task_type,
            "test_metrics": m.test_metrics,
            "epochs_run": m.epochs_run,
            "best_epoch": m.best_epoch,
            "train_seconds": m.train_seconds,
            "samples_per_second": r.samples_per_second,
        });
        out!("{summary}");
    }
    Ok(())
}

fn print_prediction(p: &Prediction, json: bool, row: Option<usize>) {
    if json {
        out!("{}", serde_json::to_string(p).unwrap_or_default());
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
    let model = predict::load_model(&args.models_dir, &args.model)?;
    if let Some(line) = &args.features {
        let values = predict::parse_feature_line(line)?;
        print_prediction(&predict::predict_features(&model, &values)?, args.json, None);
    } else if let Some(path) = &args.input {
        for (i, p) in predict::predict_csv(&model, path)?.iter().enumerate() {
            print_prediction(p, args.json, Some(i + 1));
        }
    }
    Ok(())
}

fn run_crosscheck(args: &CrosscheckArgs) -> Result<(), PredictionError> {
    let dir = trainer::registry::resolve(&args.models_dir, &args.model)?;
    let bundle_path = dir.join(trainer::registry::BUNDLE_FILE);
    let bytes = std::fs::read(&bundle_path)
        .map_err(|source| PredictionError::Input(DataLoadError::Io { path: bundle_path.clone(), source }))?;
    let input = args.input.clone().unwrap_or_else(|| dir.join("test_rows.csv"));
    let table = data::load_file(&input)?;
    let (device, name) = trainer::device::select(args.device).map_err(|e| PredictionError::Usage(e.to_string()))?;
    let c = trainer::crosscheck::run(&bytes, &table, &device)?;
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
        Err(PredictionError::Usage(format!(
            "the engine and the inference core differ by {:.3e} (tolerance {:.0e}) with {} class disagreements",
            c.max_abs_diff, c.tolerance, c.class_disagreements
        )))
    }
}

fn run_inspect(args: &InspectArgs) -> Result<(), DataLoadError> {
    let table = data::load(args.data.as_deref(), &RedisOptions::default())?;
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

/// Exit code and message for a failed prediction or cross-check.
fn prediction_failure(e: PredictionError) -> (u8, String) {
    let code = if matches!(e, PredictionError::ModelNotFound(_)) { 4 } else { 6 };
    let kind = if code == 4 { "ModelNotFoundError" } else { "PredictionError" };
    (code, format!("{kind}: {e}"))
}

fn main() -> ExitCode {
    // candle's CPU thread pool spins on small matrices; one thread is faster unless told otherwise.
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        std::env::set_var("RAYON_NUM_THREADS", "1");
    }
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let outcome: Result<(), (u8, String)> = match &cli.command {
        Command::Train(a) => run_train(a).map_err(|e| {
            let kind = match e {
                TrainingError::Config(_) => "ConfigError",
                TrainingError::Data(_) => "DataLoadError",
                _ => "TrainingError",
            };
            (exit_code(&e), format!("{kind}: {e}"))
        }),
        Command::Predict(a) => run_predict(a).map_err(prediction_failure),
        Command::Serve(a) => trainer::server::run(ServerConfig {
            host: a.host.clone(),
            port: a.port,
            models_dir: a.models_dir.clone(),
            data_dir: a.data_dir.clone(),
            max_concurrent_trainings: a.max_concurrent_trainings,
            api_key: a.api_key.clone(),
            web_dir: Some(a.web_dir.clone()),
            redis: RedisOptions::default(),
        })
        .map_err(|e| (1, format!("server error: {e}"))),
        Command::Crosscheck(a) => run_crosscheck(a).map_err(prediction_failure),
        Command::Inspect(a) => run_inspect(a).map_err(|e| (3, format!("DataLoadError: {e}"))),
        Command::RedisPut(a) => run_redis_put(a).map_err(|e| (3, format!("DataLoadError: {e}"))),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, msg)) => {
            eprintln!("error: {msg}");
            ExitCode::from(code)
        }
    }
}
