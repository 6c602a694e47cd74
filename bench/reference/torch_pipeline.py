#!/usr/bin/env python3
"""Reference PyTorch implementation of the documented tabular pipeline.

Used for side-by-side comparisons (accuracy and speed) with the Rust trainer.
The steps, in order:

1. ``pandas.read_csv``; drop rows whose target is missing.
2. Classification: encode the target labels in sorted order (0..K-1).
3. Split with scikit-learn's ``train_test_split``: ``--test-size`` (0.2) of
   all rows for test, then ``--val-size`` (0.1) *of all rows* for validation
   from the remainder; both splits use ``--seed`` and are stratified for
   classification.
4. Impute missing feature values with fill values fit on the train split:
   numeric columns by ``--impute`` (mean/median/mode), text columns always by
   mode. ``--impute drop`` instead drops every row with a missing feature
   before the split (there is nothing to fit).
5. Label-encode text columns: vocabulary from the train split, sorted;
   a category never seen in training is mapped to the train mode's code.
6. ``StandardScaler`` fit on the train split (all feature columns).
7. MLP: for each hidden width ``Linear -> activation -> Dropout(p) ->
   BatchNorm1d``, then ``Linear`` to K classes (or 1 output for regression).
8. Adam (``--lr``), ``CrossEntropyLoss`` / ``MSELoss``, mini-batches shuffled
   every epoch; a trailing batch of a single row is skipped (BatchNorm cannot
   train on it). Early stopping on validation loss with ``--patience``
   (``--patience 0`` turns it off, as in the trainer), restoring the best
   weights. With ``--standardize-target`` a regression target is standardized
   with train statistics for training (the val loss is measured on that scale
   too) and predictions are mapped back.
9. Test metrics: accuracy and weighted precision/recall/F1 (scikit-learn,
   ``zero_division=0``) for classification; MAE, RMSE and R^2 on the original
   target scale for regression.

Progress goes to stderr; the last line on stdout is one JSON object:
``{"test_metrics": {...}, "epochs_run", "train_seconds",
"samples_per_second", "best_epoch"}``. ``train_seconds`` is the wall time of
the epoch loop (training steps plus the per-epoch validation pass);
``samples_per_second`` is the number of training rows processed in that loop
divided by ``train_seconds``.

Usage:
    pip install -r bench/reference/requirements.txt
    python3 bench/reference/torch_pipeline.py --data tests/fixtures/iris.csv \\
        --target species --task classification \\
        [--hidden 128,64,32] [--dropout 0.2] [--activation relu] \\
        [--epochs 100] [--batch-size 32] [--lr 1e-3] [--patience 10] \\
        [--seed 42] [--threads 2] [--impute mean] [--standardize-target]
"""

import argparse
import copy
import json
import math
import random
import sys
import time

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    mean_absolute_error,
    mean_squared_error,
    precision_score,
    r2_score,
    recall_score,
)
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler
from torch import nn

ACTIVATIONS = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
    "leaky_relu": nn.LeakyReLU,
    "sigmoid": nn.Sigmoid,
}


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------- data
def split_indices(y, task, test_size, val_size, seed):
    """Indices for train/val/test; val_size is a fraction of *all* rows."""
    idx = np.arange(len(y))
    strat = y if task == "classification" else None
    rest, test = train_test_split(idx, test_size=test_size, random_state=seed, stratify=strat)
    val_frac = val_size / (1.0 - test_size)
    strat_rest = y[rest] if task == "classification" else None
    train, val = train_test_split(rest, test_size=val_frac, random_state=seed, stratify=strat_rest)
    return train, val, test


def mode_of(series):
    """Most frequent non-missing value (smallest one on ties, like pandas)."""
    modes = series.dropna().mode()
    return modes.iloc[0] if len(modes) else None


def fit_transform_features(X, train, impute):
    """Impute + label-encode + standardize; statistics come from `train` rows.

    Returns a float32 matrix for all rows (same order as X).
    """
    X = X.copy()
    X_train = X.iloc[train]
    columns = []
    for col in X.columns:
        s = X[col]
        if pd.api.types.is_numeric_dtype(s):
            tr = X_train[col]
            if impute == "median":
                fill = tr.median()
            elif impute == "mode":
                fill = mode_of(tr)
            else:  # "mean" (and "drop", where nothing is missing any more)
                fill = tr.mean()
            if fill is None or (isinstance(fill, float) and math.isnan(fill)):
                fill = 0.0  # column entirely missing in train
            columns.append(s.astype("float64").fillna(fill).to_numpy())
        else:
            s = s.astype("object")
            tr = s.iloc[train]
            fill = mode_of(tr)
            s = s.where(s.notna(), fill)
            vocab = sorted({str(v) for v in tr.dropna()} | ({str(fill)} if fill is not None else set()))
            codes = {v: i for i, v in enumerate(vocab)}
            unknown = codes.get(str(fill), 0)
            columns.append(np.array([codes.get(str(v), unknown) for v in s], dtype="float64"))
    M = np.column_stack(columns) if columns else np.zeros((len(X), 0))
    scaler = StandardScaler().fit(M[train])
    return scaler.transform(M).astype("float32")


def load(args):
    df = pd.read_csv(args.data)
    if args.target not in df.columns:
        sys.exit(f"target column {args.target!r} not in {list(df.columns)}")
    n0 = len(df)
    df = df[df[args.target].notna()].reset_index(drop=True)
    features = [c for c in df.columns if c != args.target]
    if args.impute == "drop":
        df = df.dropna(subset=features).reset_index(drop=True)
    log(f"loaded {args.data}: {n0} rows, {len(df)} kept, {len(features)} features")

    y_raw = df[args.target]
    if args.task == "classification":
        classes = sorted(y_raw.unique().tolist())
        lookup = {c: i for i, c in enumerate(classes)}
        y = np.array([lookup[v] for v in y_raw], dtype="int64")
    else:
        classes = None
        y = y_raw.astype("float64").to_numpy()

    train, val, test = split_indices(y, args.task, args.test_size, args.val_size, args.seed)
    X = fit_transform_features(df[features], train, args.impute)
    log(f"split: train={len(train)} val={len(val)} test={len(test)}"
        + (f", classes={classes}" if classes else ""))
    return X, y, train, val, test, classes


# -------------------------------------------------------------------- model
def build_mlp(n_in, hidden, n_out, activation, dropout):
    layers, width = [], n_in
    for h in hidden:
        layers += [nn.Linear(width, h), ACTIVATIONS[activation](), nn.Dropout(dropout),
                   nn.BatchNorm1d(h)]
        width = h
    layers.append(nn.Linear(width, n_out))
    return nn.Sequential(*layers)


def train_model(args, X, y, train, val, classes):
    """Train with early stopping; returns (model, y_mean, y_std, stats)."""
    regression = args.task == "regression"
    y_mean, y_std = 0.0, 1.0
    if regression and args.standardize_target:
        y_mean = float(y[train].mean())
        y_std = float(y[train].std()) or 1.0

    def targets(rows):
        if regression:
            return torch.tensor((y[rows] - y_mean) / y_std, dtype=torch.float32).unsqueeze(1)
        return torch.tensor(y[rows], dtype=torch.int64)

    dev = torch.device(args.device)
    x_tr, y_tr = torch.from_numpy(X[train]).to(dev), targets(train).to(dev)
    x_va, y_va = torch.from_numpy(X[val]).to(dev), targets(val).to(dev)

    n_out = 1 if regression else len(classes)
    model = build_mlp(X.shape[1], args.hidden, n_out, args.activation, args.dropout).to(dev)
    loss_fn = nn.MSELoss() if regression else nn.CrossEntropyLoss()
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    gen = torch.Generator().manual_seed(args.seed)

    best_loss, best_epoch, best_state, bad = math.inf, 0, None, 0
    samples, epochs_run = 0, 0
    n = len(train)
    t0 = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        model.train()
        perm = torch.randperm(n, generator=gen).to(dev)
        total = 0.0
        for start in range(0, n, args.batch_size):
            b = perm[start:start + args.batch_size]
            if len(b) < 2:
                continue  # BatchNorm1d cannot train on a single row
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(x_tr[b]), y_tr[b])
            loss.backward()
            opt.step()
            total += loss.item() * len(b)
            samples += len(b)
        model.eval()
        with torch.no_grad():
            val_loss = loss_fn(model(x_va), y_va).item()
        epochs_run = epoch
        improved = val_loss < best_loss
        if improved:
            best_loss, best_epoch, bad = val_loss, epoch, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            bad += 1
        if args.verbose:
            log(f"epoch {epoch:3d} train_loss {total / n:.4f} val_loss {val_loss:.4f}"
                + (" *" if improved else ""))
        if args.patience > 0 and bad >= args.patience:
            log(f"early stop at epoch {epoch} (best epoch {best_epoch}, val_loss {best_loss:.4f})")
            break
    train_seconds = time.perf_counter() - t0
    if best_state is not None:
        model.load_state_dict(best_state)
    stats = {
        "epochs_run": epochs_run,
        "train_seconds": round(train_seconds, 4),
        "samples_per_second": round(samples / train_seconds, 1) if train_seconds > 0 else None,
        "best_epoch": best_epoch,
    }
    return model, y_mean, y_std, stats


def evaluate(args, model, X, y, test, y_mean, y_std):
    model.eval()
    with torch.no_grad():
        out = model(torch.from_numpy(X[test]).to(args.device)).cpu()
    if args.task == "classification":
        pred = out.argmax(dim=1).numpy()
        true = y[test]
        kw = dict(average="weighted", zero_division=0)
        return {
            "accuracy": float(accuracy_score(true, pred)),
            "precision": float(precision_score(true, pred, **kw)),
            "recall": float(recall_score(true, pred, **kw)),
            "f1": float(f1_score(true, pred, **kw)),
        }
    pred = out.squeeze(1).double().numpy() * y_std + y_mean
    true = y[test]
    return {
        "mae": float(mean_absolute_error(true, pred)),
        "rmse": float(math.sqrt(mean_squared_error(true, pred))),
        "r2": float(r2_score(true, pred)),
    }


# --------------------------------------------------------------------- main
def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Reference PyTorch tabular MLP pipeline.")
    p.add_argument("--data", required=True, help="CSV file")
    p.add_argument("--target", required=True, help="target column")
    p.add_argument("--task", choices=["classification", "regression"], default="classification")
    p.add_argument("--hidden", default="128,64,32", help="comma-separated hidden widths")
    p.add_argument("--dropout", type=float, default=0.2)
    p.add_argument("--activation", choices=sorted(ACTIVATIONS), default="relu")
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--patience", type=int, default=10,
                   help="early-stopping patience in epochs; 0 = off (best weights still restored)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu", help="torch device: cpu or cuda")
    p.add_argument("--impute", choices=["mean", "median", "mode", "drop"], default="mean")
    p.add_argument("--test-size", type=float, default=0.2)
    p.add_argument("--val-size", type=float, default=0.1)
    p.add_argument("--standardize-target", action="store_true",
                   help="regression: train on a standardized target, report on the raw scale")
    p.add_argument("--verbose", action="store_true", help="log every epoch to stderr")
    args = p.parse_args(argv)
    args.hidden = [int(h) for h in args.hidden.split(",") if h.strip()]
    if args.standardize_target and args.task != "regression":
        p.error("--standardize-target only applies to --task regression")
    return args


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)

    X, y, train, val, test, classes = load(args)
    model, y_mean, y_std, stats = train_model(args, X, y, train, val, classes)
    metrics = evaluate(args, model, X, y, test, y_mean, y_std)
    log("test " + ", ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
    print(json.dumps({"test_metrics": metrics, **stats}), flush=True)


if __name__ == "__main__":
    main()
