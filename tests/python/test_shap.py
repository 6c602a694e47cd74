"""Explanations against the reference implementation, `shap` from PyPI.

- Exact: `shap.explainers.Exact(f, shap.maskers.Independent(B, max_samples=len(B)))`, where f
  calls our native predictor on a batch (`trainer predict --input rows.csv --json`) and B is the
  background exported from the bundle; φ and the base value agree within 1e-5 (iris: 4
  features, diabetes: 10, a regression).
- Permutation, on a model of 16 breast-cancer features (more than exact's 10): the mean
  |φ − exact| over 20 rows stays below twice the mean standard error our sampler reports. The
  bound: each value is the mean of M independent antithetic-pair samples, so its error has
  standard deviation σ/√M, and E|error| ≤ σ/√M by Jensen; the factor 2 covers the noise of the
  σ estimate itself. Exact runs natively (`--explain-method exact`) for the comparison.
- Additivity, base + Σφ = f(x) within 1e-5, on every tested row.
"""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import shap

from conftest import ROOT, Trained, run


def predict_fn(models: Path, model_id: str, features: list[str], workdir: Path, key: str):
    """f(X) for shap: our native predictor on a batch of rows (a 2-D float array)."""
    path = workdir / f"shap-{model_id}.csv"

    def f(x):
        pd.DataFrame(np.asarray(x, dtype=np.float64), columns=features).to_csv(path, index=False)
        out = run("predict", "--models-dir", str(models), "--model", model_id, "--input", str(path), "--json")
        preds = [json.loads(l) for l in out.splitlines()]
        return np.array([p[key] for p in preds], dtype=np.float64)

    return f


def ours(models: Path, model: Trained, rows: pd.DataFrame, workdir: Path, *extra: str) -> list[dict]:
    path = workdir / f"explain-{model.id}.csv"
    rows.to_csv(path, index=False)
    out = run("predict", "--models-dir", str(models), "--model", model.id, "--input", str(path), "--json", "--explain", *extra)
    return [json.loads(l) for l in out.splitlines()]


def background(models: Path, model: Trained, workdir: Path) -> pd.DataFrame:
    path = workdir / f"bg-{model.id}.csv"
    run("export", "--models-dir", str(models), "--model", model.id, "--format", "background", "--out", str(path))
    return pd.read_csv(path)


def check_additive(e: dict, output: float, scale: float = 1.0):
    """base + Σφ = f(x), within 1e-5 (relative to the output's size beyond 1)."""
    total = e["base_value"] + sum(e["values"].values())
    assert abs(total - output) <= 1e-5 * scale, (total, output)
    assert abs(e["output"] - output) <= 1e-6 * scale


@pytest.mark.parametrize("case", ["iris", "diabetes"])
def test_exact_matches_shap_exact(workdir, models, request, case):
    if case == "iris":
        model = request.getfixturevalue("iris")
        key = "probabilities"
    else:
        model = request.getfixturevalue("diabetes")
        key = "predicted_value"
    bg = background(models, model, workdir)
    assert len(bg) == model.meta["explain"]["background_rows"] == 100
    rows = model.rows.dropna().head(5)  # shap's f takes numbers: complete rows
    f = predict_fn(models, model.id, model.features, workdir, key)
    explainer = shap.explainers.Exact(f, shap.maskers.Independent(bg.to_numpy(np.float64), max_samples=len(bg)))
    ref = explainer(rows.to_numpy(np.float64))
    got = ours(models, model, rows, workdir, "--explain-method", "exact", "--explain-class", "all")
    for r, g in enumerate(got):
        e = g["explanation"]
        assert e["method"] == "exact" and e["background"] == "stored"
        if key == "probabilities":
            for c, per_class in enumerate(e["classes"]):
                phi = [per_class["values"][f] for f in model.features]
                np.testing.assert_allclose(phi, ref.values[r, :, c], atol=1e-5)
                assert abs(per_class["base_value"] - ref.base_values[r, c]) <= 1e-5
                check_additive(per_class, g["probabilities"][c])
        else:
            phi = [e["values"][f] for f in model.features]
            # Regression values are in target units (hundreds here): relative 1e-5.
            scale = max(1.0, abs(g["predicted_value"]))
            np.testing.assert_allclose(phi, ref.values[r, :], atol=1e-5 * scale)
            assert abs(e["base_value"] - ref.base_values[r]) <= 1e-5 * scale
            check_additive(e, g["predicted_value"], scale)


def test_permutation_error_stays_within_its_standard_error(workdir, models):
    data = pd.read_csv(ROOT / "tests/fixtures/breast_cancer.csv")
    target = data.columns[-1]
    sixteen = data[list(data.columns[:16]) + [target]]
    path = workdir / "breast16.csv"
    sixteen.to_csv(path, index=False)
    model = Trained(models, ["--data", str(path), "--target", target, "--hidden", "16", "--epochs", "20", "--background-rows", "32"])
    rows = model.rows.head(20)
    sampled = ours(models, model, rows, workdir)
    exact = ours(models, model, rows, workdir, "--explain-method", "exact")
    errors, ses = [], []
    for s, x in zip(sampled, exact):
        es, ex = s["explanation"], x["explanation"]
        assert es["method"] == "permutation" and ex["method"] == "exact"
        assert es["class"] == ex["class"] == s["predicted_class"]
        check_additive(es, s["probabilities"][s["predicted_class"]])
        check_additive(ex, x["probabilities"][x["predicted_class"]])
        for f in model.features:
            errors.append(abs(es["values"][f] - ex["values"][f]))
            ses.append(es["standard_errors"][f])
    mean_err, mean_se = float(np.mean(errors)), float(np.mean(ses))
    print(f"mean |phi - exact| = {mean_err:.2e}, mean standard error = {mean_se:.2e}")
    assert mean_err <= 2 * mean_se, (mean_err, mean_se)
