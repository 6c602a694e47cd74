"""Shared fixtures of the Python client tests: the trainer binary, models trained on fixture
data (an all-numeric one and one with categorical and missing cells), reference predictions
from `trainer predict --json`, and a `trainer serve` on a free 127.0.0.1 port."""

import contextlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[2]


def trainer_bin() -> str:
    path = Path(os.environ.get("TRAINER_BIN", ROOT / "target/release/trainer"))
    if not path.is_absolute():
        path = ROOT / path
    if not path.exists():
        pytest.fail(f"trainer binary not found at {path}: cargo build --release -p trainer, or set TRAINER_BIN")
    return str(path)


def run(*args: str) -> str:
    return subprocess.run([trainer_bin(), *args], check=True, capture_output=True, text=True, cwd=ROOT).stdout


class Trained:
    """A trained model: its id, its test rows as a DataFrame (raw cells, NaN = missing) and
    the CLI's predictions for them."""

    def __init__(self, models: Path, args: list[str]):
        out = run("train", "--models-dir", str(models), "--json", "--save-test-rows", *args)
        summary = json.loads(out.strip().splitlines()[-1])
        self.id = summary["model_id"]
        self.dir = Path(summary["model_dir"])
        meta = json.loads((self.dir / "metadata.json").read_text())
        self.meta = meta
        self.features = meta["preprocessing"]["feature_names"]
        self.categorical = [f["name"] for f in meta["preprocessing"]["features"] if f["kind"] == "categorical"]
        rows = pd.read_csv(self.dir / "test_rows.csv", keep_default_na=True)[self.features].head(40).copy()
        # Blank about a tenth of the cells (deterministically): every client must carry missing values.
        for j, name in enumerate(self.features):
            col = rows[name].astype(object if name in self.categorical else np.float64).copy()
            col[[(i * 7 + j * 3) % 11 == 0 for i in range(len(rows))]] = np.nan
            rows[name] = col
        self.rows = rows
        csv = self.dir / "rows.csv"
        self.rows.to_csv(csv, index=False)
        self.want = [json.loads(l) for l in run("predict", "--models-dir", str(models), "--model", self.id, "--input", str(csv), "--json").splitlines()]


@pytest.fixture(scope="session")
def workdir():
    d = Path(tempfile.mkdtemp(prefix="pytest-trainer-"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def models(workdir):
    return workdir / "models"


@pytest.fixture(scope="session")
def iris(models):
    return Trained(models, ["--data", str(ROOT / "tests/fixtures/iris.csv"), "--target", "species", "--epochs", "30"])


@pytest.fixture(scope="session")
def diabetes(models):
    return Trained(models, ["--data", str(ROOT / "tests/fixtures/diabetes.csv"), "--target", "progression", "--task", "regression", "--epochs", "10"])


@pytest.fixture(scope="session")
def esg(models):
    return Trained(models, ["--epochs", "15"])


@contextlib.contextmanager
def serve(models: Path, data: Path, *extra: str):
    """`trainer serve` on a free 127.0.0.1 port over `models`; yields its base URL, then stops it."""
    data.mkdir(exist_ok=True)
    proc = subprocess.Popen(
        [trainer_bin(), "serve", "--host", "127.0.0.1", "--port", "0", "--models-dir", str(models), "--data-dir", str(data), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT,
    )
    try:
        line = proc.stdout.readline()
        m = re.match(r"listening on (http://\S+)", line)
        if not m:
            pytest.fail(f"trainer serve did not start: {line!r}")
        yield m.group(1)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="session")
def server(workdir, models, iris, esg):
    """`trainer serve` over the trained models; yields its base URL."""
    with serve(models, workdir / "data") as url:
        yield url


def assert_same(got: dict, want: dict, tol: float = 1e-6, what: str = ""):
    """Same class and label, probabilities within `tol` (or the regression value)."""
    if "predicted_value" in want:
        assert abs(got["predicted_value"] - want["predicted_value"]) <= tol * max(1, abs(want["predicted_value"])), what
        return
    assert got["predicted_class"] == want["predicted_class"], what
    assert got["predicted_label"] == want["predicted_label"], what
    d = max(abs(a - b) for a, b in zip(got["probabilities"], want["probabilities"]))
    assert d <= tol, f"{what}: max |dp| = {d}"
