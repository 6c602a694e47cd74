#!/usr/bin/env python3
"""Model-quality benchmark driver (run it through bench/quality/run.sh).

For each dataset and split seed, one split is made by ``trainer train --save-split``
(our defaults), and every method uses exactly those rows:

* ``trainer train`` (defaults) and ``trainer tune --trials N`` (its own split.json is
  checked to be identical to the train one);
* scikit-learn LogisticRegression / Ridge, HistGradientBoosting and MLP at default
  parameters, fitted on train+val, scored on test;
* Optuna (TPESampler, seeded, N trials, SuccessiveHalvingPruner on per-epoch reports)
  around a PyTorch MLP built like the trainer's (bench/reference/torch_pipeline.py's
  ``build_mlp``: Linear -> activation -> Dropout -> BatchNorm1d), searching the trainer's
  default space on train/val and scoring the winner once on test.

Progress goes to stderr; the markdown table and the goal lines go to stdout; the raw
per-run numbers go to ``--json``.
"""

import argparse
import copy
import json
import math
import os
import re
import statistics
import subprocess
import sys
import time
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "bench", "reference"))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

# --------------------------------------------------------------------- datasets
# name -> (target column, task, how to get the CSV)
DATASETS = {
    "iris": ("species", "classification"),
    "wine": ("class", "classification"),
    "breast_cancer": ("diagnosis", "classification"),
    "diabetes": ("progression", "regression"),
    "esg": ("esg_rating", "classification"),
}
ESG_CSV = os.path.join(ROOT, "trainer", "data", "esg_ratings.csv")


def log(msg):
    print(f"[quality] {msg}", file=sys.stderr, flush=True)


def snake_case(name):
    """'sepal length (cm)' -> 'sepal_length' (as scripts/export_sklearn_fixtures.py)."""
    name = re.sub(r"\(.*?\)", "", name)
    name = re.sub(r"[^0-9a-zA-Z]+", "_", name.strip().lower())
    return name.strip("_")


def export_dataset(name, data_dir):
    """CSV path of a dataset, exporting scikit-learn's copy on first use."""
    if name == "esg":
        return ESG_CSV
    path = os.path.join(data_dir, f"{name}.csv")
    if os.path.exists(path):
        return path
    from sklearn import datasets

    target = DATASETS[name][0]
    if name == "iris":
        b = datasets.load_iris(as_frame=True)
        y = b.target.map(lambda t: b.target_names[t])
    elif name == "wine":
        b = datasets.load_wine(as_frame=True)
        y = b.target.astype(int)
    elif name == "breast_cancer":
        b = datasets.load_breast_cancer(as_frame=True)
        y = b.target.map(lambda t: b.target_names[t])
    elif name == "diabetes":
        b = datasets.load_diabetes(as_frame=True, scaled=False)
        y = b.target
    else:
        raise SystemExit(f"unknown dataset {name}")
    df = b.data.copy()
    df.columns = [snake_case(c) for c in df.columns]
    assert len(set(df.columns)) == len(df.columns), name
    df[target] = y.to_numpy()
    os.makedirs(data_dir, exist_ok=True)
    df.to_csv(path + ".tmp", index=False, float_format="%.10g")
    os.replace(path + ".tmp", path)
    log(f"exported {path}: {len(df)} rows, {df.shape[1] - 1} features")
    return path


# --------------------------------------------------------------------- trainer
def run_trainer(trainer, sub, csv, target, task, seed, models_dir, extra, env, timeout=None):
    """Run `trainer train|tune`; returns (summary JSON, split dict, wall seconds), or
    (None, None, timeout) when it ran past `timeout` seconds (it is killed)."""
    cmd = [trainer, sub, "--data", csv, "--target", target, "--task", task, "--seed", str(seed),
           "--save-split", "--models-dir", models_dir, "--json", *extra]
    t0 = time.perf_counter()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, None, float(timeout)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        sys.stderr.write(p.stderr[-4000:])
        raise SystemExit(f"{' '.join(cmd)} failed with exit {p.returncode}")
    summary = json.loads(p.stdout.strip().splitlines()[-1])
    with open(os.path.join(summary["model_dir"], "split.json")) as fh:
        split = json.load(fh)
    return summary, split, wall


def score_of(test_metrics, task):
    return float(test_metrics["accuracy"] if task == "classification" else test_metrics["r2"])


# --------------------------------------------------------------------- sklearn
def sklearn_models(task, num_cols, cat_cols, seed):
    """name -> unfitted pipeline; the preprocessing is fitted with the model (train rows only)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.neural_network import MLPClassifier, MLPRegressor
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

    def scaled():  # impute (mean / most frequent) + standardise + one-hot
        parts = [("num", Pipeline([("impute", SimpleImputer(strategy="mean")),
                                   ("scale", StandardScaler())]), num_cols)]
        if cat_cols:
            parts.append(("cat", Pipeline([("impute", SimpleImputer(strategy="most_frequent")),
                                           ("onehot", OneHotEncoder(handle_unknown="ignore"))]), cat_cols))
        return ColumnTransformer(parts)

    def ordinal():  # impute + ordinal codes, the categories flagged for HGB's native support
        parts = [("num", SimpleImputer(strategy="mean"), num_cols)]
        if cat_cols:
            parts.append(("cat", Pipeline([
                ("impute", SimpleImputer(strategy="most_frequent")),
                ("ordinal", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1)),
            ]), cat_cols))
        return ColumnTransformer(parts)

    cats = ([False] * len(num_cols) + [True] * len(cat_cols)) if cat_cols else None
    if task == "classification":
        linear = ("LogisticRegression", lambda max_iter=100: LogisticRegression(max_iter=max_iter))
        hgb = HistGradientBoostingClassifier(categorical_features=cats, random_state=seed)
        mlp = MLPClassifier(random_state=seed)
    else:
        linear = ("Ridge", lambda max_iter=None: Ridge())
        hgb = HistGradientBoostingRegressor(categorical_features=cats, random_state=seed)
        mlp = MLPRegressor(random_state=seed)
    def target_scaled(model):
        # As the trainer: a regression target is standardised (train statistics) for fitting.
        if task == "classification":
            return model
        from sklearn.compose import TransformedTargetRegressor

        return TransformedTargetRegressor(regressor=model, transformer=StandardScaler())

    return [
        ("linear", linear[0], lambda max_iter=None: Pipeline(
            [("prep", scaled()),
             ("model", target_scaled(linear[1]() if max_iter is None else linear[1](max_iter)))])),
        ("hgb", "HistGradientBoosting",
         lambda max_iter=None: Pipeline([("prep", ordinal()), ("model", target_scaled(hgb))])),
        ("mlp", "MLP", lambda max_iter=None: Pipeline([("prep", scaled()), ("model", target_scaled(mlp))])),
    ]


def run_sklearn(df, features, target, task, split, seed):
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.metrics import accuracy_score, r2_score

    fit_rows = np.array(split["train"] + split["val"])
    test_rows = np.array(split["test"])
    X, y = df[features], df[target]
    cat_cols = [c for c in features if not pd.api.types.is_numeric_dtype(df[c])]
    num_cols = [c for c in features if c not in cat_cols]
    out = {}
    for key, label, make in sklearn_models(task, num_cols, cat_cols, seed):
        t0 = time.perf_counter()
        notes = []

        def fit(model):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", ConvergenceWarning)
                model.fit(X.iloc[fit_rows], y.iloc[fit_rows])
            return any(issubclass(w.category, ConvergenceWarning) for w in caught)

        model = make()
        unconverged = fit(model)
        if unconverged and key == "linear":
            # LogisticRegression's default max_iter=100 did not converge: raise it.
            model = make(max_iter=10_000)
            notes.append("max_iter=10000")
            unconverged = fit(model)
        if unconverged:
            notes.append("ConvergenceWarning")
        pred = model.predict(X.iloc[test_rows])
        truth = y.iloc[test_rows]
        score = accuracy_score(truth, pred) if task == "classification" else r2_score(truth, pred)
        out[key] = {"label": label, "score": float(score), "wall": time.perf_counter() - t0, "notes": notes}
    return out


# --------------------------------------------------------------------- Optuna + PyTorch
EPOCHS, PATIENCE = 100, 10  # the trainer's defaults
ACTIVATION_CHOICES = ["relu", "gelu", "tanh", "leaky_relu", "sigmoid"]


def batch_ranges(n, batch):
    """As the trainer: a trailing batch of one row is merged into the previous one."""
    r = [(s, min(s + batch, n)) for s in range(0, n, batch)]
    if len(r) > 1 and r[-1][1] - r[-1][0] == 1:
        s, _ = r.pop()
        r[-1] = (r[-1][0], n)
    return r


def run_optuna(df, features, target, task, split, seed, trials):
    import optuna
    import torch
    from torch import nn
    from torch_pipeline import build_mlp, fit_transform_features

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    t0 = time.perf_counter()
    train, val, test = (np.array(split[k]) for k in ("train", "val", "test"))
    # Impute (mean / mode), label-encode text, StandardScaler: fitted on the train rows only.
    X = fit_transform_features(df[features], train, "mean")
    regression = task == "regression"
    if regression:
        y = df[target].astype("float64").to_numpy()
        y_mean, y_std = float(y[train].mean()), float(y[train].std()) or 1.0
        ys = (y - y_mean) / y_std
        tgt = lambda rows: torch.tensor(ys[rows], dtype=torch.float32).unsqueeze(1)  # noqa: E731
        n_out, loss_fn = 1, nn.MSELoss()
    else:
        classes = sorted(df[target].unique().tolist())
        lookup = {c: i for i, c in enumerate(classes)}
        y = np.array([lookup[v] for v in df[target]], dtype="int64")
        tgt = lambda rows: torch.tensor(y[rows], dtype=torch.int64)  # noqa: E731
        n_out, loss_fn = len(classes), nn.CrossEntropyLoss()
    x_tr, y_tr = torch.from_numpy(X[train]), tgt(train)
    x_va, y_va = torch.from_numpy(X[val]), tgt(val)
    n = len(train)

    def make(p):
        return build_mlp(X.shape[1], [p["width"]] * p["depth"], n_out, p["activation"], p["dropout"])

    best = {"loss": math.inf, "state": None, "params": None}

    def objective(trial):
        p = {
            "depth": trial.suggest_int("depth", 1, 4),
            "width": trial.suggest_int("width", 16, 512, log=True),
            "dropout": trial.suggest_float("dropout", 0.0, 0.5),
            "activation": trial.suggest_categorical("activation", ACTIVATION_CHOICES),
            "lr": trial.suggest_float("lr", 1e-4, 1e-2, log=True),
        }
        p["weight_decay"] = (0.0 if trial.suggest_categorical("weight_decay_is_zero", [True, False])
                             else trial.suggest_float("weight_decay", 1e-6, 1e-3, log=True))
        p["batch_size"] = trial.suggest_categorical("batch_size", [32, 64, 128, 256])
        p["optimizer"] = trial.suggest_categorical("optimizer", ["adam", "adamw"])
        torch.manual_seed(seed)  # every trial starts from the run's seed, as in the trainer
        model = make(p)
        opt_cls = torch.optim.Adam if p["optimizer"] == "adam" else torch.optim.AdamW
        opt = opt_cls(model.parameters(), lr=p["lr"], weight_decay=p["weight_decay"])
        gen = torch.Generator().manual_seed(seed)
        ranges = batch_ranges(n, min(p["batch_size"], n))
        best_loss, best_state, waited = math.inf, None, 0
        for epoch in range(1, EPOCHS + 1):
            model.train()
            perm = torch.randperm(n, generator=gen)
            for s, e in ranges:
                b = perm[s:e]
                opt.zero_grad(set_to_none=True)
                loss = loss_fn(model(x_tr[b]), y_tr[b])
                loss.backward()
                opt.step()
            model.eval()
            with torch.no_grad():
                val_loss = loss_fn(model(x_va), y_va).item()
            if not math.isfinite(val_loss):
                return float("nan")  # a failed trial, as the trainer's non-finite loss
            if val_loss < best_loss:
                best_loss, best_state, waited = val_loss, copy.deepcopy(model.state_dict()), 0
            else:
                waited += 1
            trial.report(best_loss, epoch)  # best so far, like the trainer's rungs
            if trial.should_prune():
                raise optuna.TrialPruned()
            if waited >= PATIENCE:
                break
        if best_loss < best["loss"]:  # keep the winner's best-epoch weights
            best.update(loss=best_loss, state=best_state, params=p)
        return best_loss

    study = optuna.create_study(
        direction="minimize",
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=optuna.pruners.SuccessiveHalvingPruner(min_resource=4, reduction_factor=3),
    )
    t_search = time.perf_counter()
    study.optimize(objective, n_trials=trials)
    search_seconds = time.perf_counter() - t_search
    if best["state"] is None:
        raise SystemExit("Optuna: no trial completed")
    model = make(best["params"])
    model.load_state_dict(best["state"])
    model.eval()
    with torch.no_grad():
        out = model(torch.from_numpy(X[test]))
    if regression:
        from sklearn.metrics import r2_score

        pred = out.squeeze(1).double().numpy() * y_std + y_mean
        score = r2_score(y[test], pred)
    else:
        score = float((out.argmax(dim=1).numpy() == y[test]).mean())
    states = [t.state.name for t in study.trials]
    return {"score": float(score), "wall": time.perf_counter() - t0, "search_seconds": search_seconds,
            "pruned": states.count("PRUNED"), "failed": states.count("FAIL"),
            "best_val_loss": best["loss"], "best_params": best["params"]}


# --------------------------------------------------------------------- report
METHODS = [  # key, label
    ("train", "trainer train (defaults)"),
    ("tune", "trainer tune ({trials} trials, --importance-rows 0)"),
    ("tune_shipped", "trainer tune ({trials} trials), as shipped (--importance-rows 200)"),
    ("linear", "scikit-learn {linear}"),
    ("hgb", "scikit-learn HistGradientBoosting"),
    ("mlp", "scikit-learn MLP"),
    ("optuna", "Optuna TPE + PyTorch MLP ({trials} trials)"),
]
SKLEARN = ("linear", "hgb", "mlp")


def mean_std(values):
    m = statistics.fmean(values)
    s = statistics.stdev(values) if len(values) > 1 else float("nan")
    return m, s


def fmt_ms(values):
    m, s = mean_std(values)
    return f"{m:.4f} ± {s:.4f}" if not math.isnan(s) else f"{m:.4f}"


def report(runs, datasets, seeds, trials, versions):
    lines = []
    p = lines.append
    p(f"| dataset | metric | method | test score, mean ± std over {len(seeds)} seed"
      f"{'s' if len(seeds) != 1 else ''} | wall s per run, mean |")
    p("|---|---|---|---:|---:|")
    agg = {}  # (ds, method) -> (mean score, mean wall)
    for ds in datasets:
        rs = runs[ds]
        task = DATASETS[ds][1]
        metric = "accuracy" if task == "classification" else "R²"
        info = rs[0]["info"]
        for key, label in METHODS:
            scores = [r[key]["score"] for r in rs if r[key]["score"] is not None]
            walls = [r[key]["wall"] for r in rs]
            censored = any(r[key].get("timed_out") for r in rs)
            agg[(ds, key)] = (statistics.fmean(scores) if scores else float("nan"), statistics.fmean(walls))
            name = label.format(trials=trials, linear="LogisticRegression" if task == "classification" else "Ridge")
            notes = sorted({n for r in rs for n in r[key].get("notes", [])})
            if notes:
                count = {n: sum(n in r[key].get("notes", []) for r in rs) for n in notes}
                name += " (" + ", ".join(f"{n} in {c}/{len(rs)}" for n, c in count.items()) + ")"
            shown = fmt_ms(scores) if scores else "—"
            if scores and len(scores) < len(rs):
                shown += f" ({len(scores)} of {len(rs)} seeds)"
            wall = f"{'≥ ' if censored else ''}{statistics.fmean(walls):.2f}"
            p(f"| {ds} ({info}) | {metric} | {name} | {shown} | {wall} |")
    p("")

    # 1 point = 0.01 of the metric: a percentage point of accuracy, 0.01 of R².
    def pts(d):
        return f"{d * 100:+.2f}"

    # Goal 1: tuned >= defaults on every dataset (means over the seeds).
    d1 = {ds: agg[(ds, "tune")][0] - agg[(ds, "train")][0] for ds in datasets}
    g1 = all(v >= 0 for v in d1.values())
    p(f"- **Goal 1, tuned ≥ defaults on every set: {'holds' if g1 else 'does not hold'}.** "
      "tune − train, points: " + ", ".join(f"{ds} {pts(v)}" for ds, v in d1.items()) + ".")

    # Goal 2: tuned within 0.5 point of the best scikit-learn baseline, on average.
    gaps, best_names = {}, {}
    for ds in datasets:
        key = max(SKLEARN, key=lambda k: agg[(ds, k)][0])
        best_names[ds] = runs[ds][0][key]["label"]
        gaps[ds] = agg[(ds, "tune")][0] - agg[(ds, key)][0]
    avg_gap = statistics.fmean(gaps.values())
    g2 = avg_gap >= -0.005
    p(f"- **Goal 2, tuned within 0.5 point of the best scikit-learn baseline on average: "
      f"{'holds' if g2 else 'does not hold'}** (mean gap {pts(avg_gap)} points; per set, tune − best "
      "scikit-learn: " + ", ".join(f"{ds} {pts(gaps[ds])} vs {best_names[ds]}" for ds in datasets) + ").")

    # Goal 3: wall time of trainer tune <= 1/2 of Optuna + PyTorch for the same trials.
    opt_total = sum(r["optuna"]["wall"] for ds in datasets for r in runs[ds])
    for key, what in (("tune", "search + retrain of the winner + save (`--importance-rows 0`)"),
                      ("tune_shipped", "the command as shipped (plus the model card's global importance)")):
        tune_total = sum(r[key]["wall"] for ds in datasets for r in runs[ds])
        censored = [f"{ds} seed {r['seed']}" for ds in datasets for r in runs[ds] if r[key].get("timed_out")]
        ratio = tune_total / opt_total
        per = {ds: agg[(ds, key)][1] / agg[(ds, "optuna")][1] for ds in datasets}
        if ratio <= 0.5 and censored:
            verdict = "undetermined (runs stopped at the time limit)"
        else:
            verdict = "holds" if ratio <= 0.5 else "does not hold"
        p(f"- **Goal 3, `trainer tune` wall time ≤ ½ of Optuna + PyTorch ({trials} trials each), {what}: "
          f"{verdict}** (all runs: {'≥ ' if censored else ''}{tune_total:.1f} s vs {opt_total:.1f} s, "
          f"ratio {'≥ ' if censored else ''}{ratio:.3f}; per set: "
          + ", ".join(f"{ds} {v:.3f}" for ds, v in per.items())
          + f"; every set ≤ ½: {'yes' if all(v <= 0.5 for v in per.values()) else 'no'}"
          + (f"; stopped at the {runs[datasets[0]][0]['shipped_timeout']:.0f} s limit, counted as that: "
             + ", ".join(censored) if censored else "") + ").")
    imp = {ds: statistics.fmean(r["tune_shipped"]["wall"] - r["tune"]["wall"] for r in runs[ds]) for ds in datasets}
    cut = {ds: any(r["tune_shipped"].get("timed_out") for r in runs[ds]) for ds in datasets}
    p("- The global-importance step of the shipped command (wall − wall with `--importance-rows 0`), "
      "s per run: " + ", ".join(f"{ds} {'≥ ' if cut[ds] else ''}{v:.2f}" for ds, v in imp.items()) + ".")
    s_tune = sum(r["tune_search_seconds"] for ds in datasets for r in runs[ds])
    s_opt = sum(r["optuna"]["search_seconds"] for ds in datasets for r in runs[ds])
    p(f"- Search loop alone (trainer's `search_seconds` vs `study.optimize`): {s_tune:.1f} s vs {s_opt:.1f} s, "
      f"ratio {s_tune / s_opt:.3f}.")
    d4 = {ds: agg[(ds, "tune")][0] - agg[(ds, "optuna")][0] for ds in datasets}
    p("- Search quality, trainer tune − Optuna + PyTorch, points: "
      + ", ".join(f"{ds} {pts(v)}" for ds, v in d4.items())
      + f"; mean {pts(statistics.fmean(d4.values()))}.")
    pr_t = sum(r["tune_pruned"] for ds in datasets for r in runs[ds])
    pr_o = sum(r["optuna"]["pruned"] for ds in datasets for r in runs[ds])
    n_trials = trials * sum(len(runs[ds]) for ds in datasets)
    p(f"- Pruned trials: trainer tune {pr_t}/{n_trials}, Optuna {pr_o}/{n_trials}.")
    kept = [r for ds in datasets for r in runs[ds] if r.get("tune_lowest_trial") is not None]
    if any("tune_selected_by" in r for ds in datasets for r in runs[ds]):
        per_set = ", ".join(f"{ds} {sum(r.get('tune_lowest_trial') is not None for r in runs[ds])}/{len(runs[ds])}"
                            for ds in datasets)
        p(f"- trainer tune shipped the base config over a lower-loss trial (one-standard-error rule) in "
          f"{len(kept)} of {sum(len(runs[ds]) for ds in datasets)} runs: {per_set}.")
    p("")
    p(f"Seeds {','.join(map(str, seeds))}; each (dataset, seed) split is trainer train's (test 0.2, "
      "validation 0.1 of all rows, stratified for classification), checked identical for trainer tune, "
      "and shared by every method: scikit-learn fits on train+val and scores on test; both searches "
      "select on validation loss and score the winner once on test. 1 point = 0.01 of the metric "
      "(a percentage point of accuracy, 0.01 of R²); std is the sample std over seeds. Wall: the whole "
      "`trainer` command (load, search, retrain of the winner, save; trainer train and the shipped tune "
      "also compute the model card's global importance); scikit-learn's fit + predict; "
      "Optuna's in-process preprocessing + search + test scoring (Python start-up and imports excluded). "
      "scikit-learn: mean / most-frequent imputation, one-hot text columns and StandardScaler for the linear "
      "and MLP models, ordinal codes as native categories for HistGradientBoosting, a regression target "
      "standardised for fitting (as the trainer does); LogisticRegression at max_iter=100 unless a note says "
      "it was raised after a ConvergenceWarning; MLP at its defaults (max_iter=200) even when it warns. "
      "One thread everywhere (OMP_NUM_THREADS=1, torch.set_num_threads(1), RAYON_NUM_THREADS=1, "
      f"--parallel 1). {versions}.")
    return "\n".join(lines)


# --------------------------------------------------------------------- main
def main():
    ap = argparse.ArgumentParser(description="Model-quality benchmark driver")
    ap.add_argument("--trainer", required=True)
    ap.add_argument("--work", required=True, help="scratch directory for model dirs")
    ap.add_argument("--data-dir", default=os.path.join(ROOT, "bench", "out", "quality-data"))
    ap.add_argument("--seeds", default="1,2,3,4,5")
    ap.add_argument("--trials", type=int, default=40)
    ap.add_argument("--datasets", default=",".join(DATASETS))
    ap.add_argument("--json", help="write the raw per-run results here")
    ap.add_argument("--shipped-timeout", type=float, default=300.0,
                    help="time limit of each as-shipped `trainer tune` run, seconds")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    datasets = [d.strip() for d in args.datasets.replace(" ", ",").split(",") if d.strip()]
    for d in datasets:
        if d not in DATASETS:
            raise SystemExit(f"unknown dataset {d!r}; known: {', '.join(DATASETS)}")
    env = dict(os.environ, OMP_NUM_THREADS="1", RAYON_NUM_THREADS="1", RUST_LOG="warn")

    runs = {}
    for ds in datasets:
        target, task = DATASETS[ds]
        csv = export_dataset(ds, args.data_dir)
        df = pd.read_csv(csv)
        features = [c for c in df.columns if c != target]
        n_cat = sum(not pd.api.types.is_numeric_dtype(df[c]) for c in features)
        info = f"{len(df)}×{len(features)}" + (f", {n_cat} categorical" if n_cat else "")
        if task == "classification":
            info += f", {df[target].nunique()} classes"
        runs[ds] = []
        for seed in seeds:
            r = {"dataset": ds, "seed": seed, "info": info}
            base = os.path.join(args.work, ds, f"seed{seed}")
            log(f"{ds} seed {seed}: trainer train")
            s, split, wall = run_trainer(args.trainer, "train", csv, target, task, seed,
                                         os.path.join(base, "train"), [], env)
            rows = sorted(split["train"] + split["val"] + split["test"])
            if rows != list(range(len(df))):
                raise SystemExit(f"{ds} seed {seed}: split.json does not cover the {len(df)} data rows once each")
            r["split_sizes"] = {k: len(v) for k, v in split.items()}
            r["train"] = {"score": score_of(s["test_metrics"], task), "wall": wall}

            # The search with the model card's global importance off: the importance (Shapley
            # values over up to 200 test rows) is computed after training and changes neither
            # the model nor its test score; as shipped it can cost minutes (exact below 11
            # features), so the shipped command is timed separately, with a time limit.
            tune_args = ["--trials", str(args.trials), "--parallel", "1"]
            log(f"{ds} seed {seed}: trainer tune --trials {args.trials} --importance-rows 0")
            s, tsplit, wall = run_trainer(args.trainer, "tune", csv, target, task, seed,
                                          os.path.join(base, "tune"), tune_args + ["--importance-rows", "0"], env)
            if tsplit != split:
                raise SystemExit(f"{ds} seed {seed}: trainer tune's split.json differs from trainer train's")
            r["tune"] = {"score": score_of(s["test_metrics"], task), "wall": wall}
            r["tune_search_seconds"] = s["search_seconds"]
            r["tune_pruned"], r["tune_failed"] = s["pruned"], s["failed"]
            r["tune_best_params"], r["tune_best_val_loss"] = s["best_params"], s["best_val_loss"]
            r["tune_lowest_trial"], r["tune_selected_by"] = s.get("lowest_trial"), s.get("selected_by")
            with open(os.path.join(s["model_dir"], "metadata.json")) as fh:
                meta = json.load(fh)
            r["tune_winner_train_seconds"] = meta["train_seconds"]

            log(f"{ds} seed {seed}: trainer tune --trials {args.trials} (as shipped, "
                f"limit {args.shipped_timeout:.0f} s)")
            r["shipped_timeout"] = args.shipped_timeout
            s2, ssplit, wall = run_trainer(args.trainer, "tune", csv, target, task, seed,
                                           os.path.join(base, "tune-shipped"), tune_args, env,
                                           timeout=args.shipped_timeout)
            if s2 is None:
                r["tune_shipped"] = {"score": None, "wall": wall, "timed_out": True}
            else:
                if ssplit != split:
                    raise SystemExit(f"{ds} seed {seed}: trainer tune's split.json differs from trainer train's")
                with open(os.path.join(s2["model_dir"], "metadata.json")) as fh:
                    same = json.load(fh)["weights_sha256"] == meta["weights_sha256"]
                r["tune_shipped"] = {"score": score_of(s2["test_metrics"], task), "wall": wall,
                                     "notes": [] if same else ["other weights than with --importance-rows 0"]}

            log(f"{ds} seed {seed}: scikit-learn")
            r.update(run_sklearn(df, features, target, task, split, seed))

            log(f"{ds} seed {seed}: Optuna + PyTorch, {args.trials} trials")
            r["optuna"] = run_optuna(df, features, target, task, split, seed, args.trials)
            log(f"{ds} seed {seed}: " + ", ".join(
                f"{k} {'—' if r[k]['score'] is None else format(r[k]['score'], '.4f')} ({r[k]['wall']:.1f} s)"
                for k, _ in METHODS))
            runs[ds].append(r)
            if args.json:  # after every run, so a stopped run leaves what it measured
                with open(args.json, "w") as fh:
                    json.dump({"seeds": seeds, "trials": args.trials, "runs": runs}, fh, indent=1, default=str)

    from importlib.metadata import version

    versions = ", ".join(f"{p} {version(p)}" for p in ("torch", "optuna", "scikit-learn", "pandas", "numpy"))
    print(report(runs, datasets, seeds, args.trials, versions))


if __name__ == "__main__":
    main()
