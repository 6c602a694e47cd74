#!/usr/bin/env python3
"""Generate a purely numeric classification CSV for the speed benchmarks.

Columns are ``f0 .. f{F-1}`` (floats, 4 decimals) followed by ``label``
(an integer in ``0 .. C-1``). Features are correlated Gaussians; the label is
the arg-max of class scores computed by a fixed random one-hidden-layer tanh
network plus a quadratic term and Gumbel noise, so the signal is non-linear,
learnable (an MLP clearly beats a linear model) and never perfectly separable.
Classes come out roughly balanced.

Rows are generated and written in chunks, so memory stays flat and
200,000 / 1,000,000 rows take seconds with numpy. numpy is used when it is
installed; otherwise a (much slower) standard-library fallback runs. The two
paths draw different random streams, so for a given seed the file is
reproducible per path, not across them (the script reports which path ran).

Usage:
    python3 scripts/gen_numeric_dataset.py --rows 200000 --features 32 \\
        --classes 5 --seed 42 --out bench/data/numeric_200k.csv
"""

import argparse
import math
import os
import random
import sys
import time

try:
    import numpy as np
except ImportError:  # pragma: no cover - exercised only without numpy
    np = None

CHUNK_ROWS = 50_000
CALIBRATION_ROWS = 20_000  # sample used to balance the classes
HIDDEN = 16           # width of the hidden "teacher" layer
NOISE_SCALE = 0.6     # Gumbel noise temperature (higher = harder task)
BALANCE_STEPS = 30    # iterations of the class-balancing bias fit


# ----------------------------------------------------------------- numpy path
def generate_numpy(out, rows, features, classes, seed):
    rng = np.random.default_rng(seed)
    # Fixed "teacher" parameters, drawn first so they do not depend on --rows.
    mix = np.eye(features) + 0.3 * rng.standard_normal((features, features)) / math.sqrt(features)
    w1 = rng.standard_normal((features, HIDDEN)) * (1.8 / math.sqrt(features))
    b1 = 0.5 * rng.standard_normal(HIDDEN)
    w2 = rng.standard_normal((HIDDEN, classes)) * (2.5 / math.sqrt(HIDDEN))
    quad = rng.standard_normal((min(features, 8), classes)) * 0.35

    def teacher(x):
        scores = np.tanh(x @ w1 + b1) @ w2
        return scores + (x[:, : quad.shape[0]] ** 2 - 1.0) @ quad

    # Per-class offsets that make the classes roughly balanced.
    calib = rng.standard_normal((CALIBRATION_ROWS, features)) @ mix
    calib_scores = teacher(calib) + NOISE_SCALE * rng.gumbel(size=(CALIBRATION_ROWS, classes))
    bias = np.zeros(classes)
    for _ in range(BALANCE_STEPS):
        freq = np.bincount((calib_scores + bias).argmax(axis=1), minlength=classes) / CALIBRATION_ROWS
        bias -= 0.5 * np.log(np.maximum(freq, 1e-4) * classes)

    counts = np.zeros(classes, dtype=np.int64)
    fmt = ",".join(["%.4f"] * features) + ",%d"
    for start in range(0, rows, CHUNK_ROWS):
        n = min(CHUNK_ROWS, rows - start)
        x = rng.standard_normal((n, features)) @ mix
        scores = teacher(x) + bias
        scores += NOISE_SCALE * rng.gumbel(size=(n, classes))
        label = scores.argmax(axis=1)
        counts += np.bincount(label, minlength=classes)
        table = np.empty((n, features + 1), dtype=object)
        table[:, :features] = np.round(x, 4) + 0.0  # "+ 0.0" turns -0.0 into 0.0
        table[:, features] = label
        out.write("\n".join(fmt % tuple(r) for r in table.tolist()))
        out.write("\n")
    return counts.tolist()


# -------------------------------------------------------------- stdlib path
def generate_stdlib(out, rows, features, classes, seed):
    rng = random.Random(seed)
    g = rng.gauss
    mix = [[(1.0 if i == j else 0.0) + 0.3 * g(0, 1) / math.sqrt(features)
            for j in range(features)] for i in range(features)]
    w1 = [[g(0, 1) * 1.8 / math.sqrt(features) for _ in range(HIDDEN)] for _ in range(features)]
    b1 = [0.5 * g(0, 1) for _ in range(HIDDEN)]
    w2 = [[g(0, 1) * 2.5 / math.sqrt(HIDDEN) for _ in range(classes)] for _ in range(HIDDEN)]
    nq = min(features, 8)
    quad = [[g(0, 1) * 0.35 for _ in range(classes)] for _ in range(nq)]

    def draw_x():
        z = [g(0, 1) for _ in range(features)]
        return [sum(z[k] * mix[k][j] for k in range(features)) for j in range(features)]

    def noisy_scores(x):
        h = [math.tanh(sum(x[k] * w1[k][j] for k in range(features)) + b1[j])
             for j in range(HIDDEN)]
        scores = []
        for c in range(classes):
            s = sum(h[j] * w2[j][c] for j in range(HIDDEN))
            s += sum((x[k] ** 2 - 1.0) * quad[k][c] for k in range(nq))
            u = rng.random() or 1e-300
            scores.append(s + NOISE_SCALE * -math.log(-math.log(u)))  # Gumbel noise
        return scores

    def argmax(values):
        return max(range(len(values)), key=values.__getitem__)

    # Per-class offsets that make the classes roughly balanced (smaller
    # calibration sample than the numpy path: this path is slow).
    n_calib = CALIBRATION_ROWS // 10
    calib = [noisy_scores(draw_x()) for _ in range(n_calib)]
    bias = [0.0] * classes
    for _ in range(BALANCE_STEPS):
        freq = [0] * classes
        for sc in calib:
            freq[argmax([v + b for v, b in zip(sc, bias)])] += 1
        bias = [b - 0.5 * math.log(max(f / n_calib, 1e-4) * classes) for b, f in zip(bias, freq)]

    counts = [0] * classes
    lines = []
    for i in range(rows):
        x = draw_x()
        label = argmax([v + b for v, b in zip(noisy_scores(x), bias)])
        counts[label] += 1
        lines.append(",".join(f"{round(v, 4) + 0.0:.4f}" for v in x) + f",{label}")
        if len(lines) == CHUNK_ROWS or i == rows - 1:
            out.write("\n".join(lines))
            out.write("\n")
            lines = []
    return counts


def main():
    parser = argparse.ArgumentParser(description="Generate a numeric classification CSV.")
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--features", type=int, default=32)
    parser.add_argument("--classes", type=int, default=5)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", required=True)
    parser.add_argument("--no-numpy", action="store_true",
                        help="force the standard-library path (slow)")
    args = parser.parse_args()
    if args.rows < 1 or args.features < 1 or args.classes < 2:
        parser.error("need --rows >= 1, --features >= 1 and --classes >= 2")

    out_dir = os.path.dirname(args.out)
    if out_dir:
        os.makedirs(out_dir, exist_ok=True)
    use_numpy = np is not None and not args.no_numpy
    t0 = time.perf_counter()
    with open(args.out, "w", newline="") as out:
        out.write(",".join([f"f{i}" for i in range(args.features)] + ["label"]) + "\n")
        gen = generate_numpy if use_numpy else generate_stdlib
        counts = gen(out, args.rows, args.features, args.classes, args.seed)
    print(f"wrote {args.out}: {args.rows} rows x {args.features} features, "
          f"{args.classes} classes {counts} "
          f"({'numpy' if use_numpy else 'stdlib'}, {time.perf_counter() - t0:.1f}s)",
          file=sys.stderr)


if __name__ == "__main__":
    main()
