"""The WASI build of the inference core (inference-wasm/wasi/inference-wasi.wasm, from
scripts/build-wasi.sh) under a real wasmtime embedding (the `wasmtime` PyPI package): a bundle
and a request on stdin give the same JSON as the native core (`trainer predict --json`), in
every protocol, with typed errors and exit codes."""

import json
import os
import tempfile
from pathlib import Path

import pytest
import wasmtime

from conftest import ROOT

WASM = ROOT / "inference-wasm/wasi/inference-wasi.wasm"


@pytest.fixture(scope="module")
def module():
    if not WASM.exists():
        pytest.fail(f"{WASM} is missing: run scripts/build-wasi.sh")
    engine = wasmtime.Engine()
    return engine, wasmtime.Module.from_file(engine, str(WASM))


def run_wasi(module, model_dir: Path, body: bytes, *args: str) -> tuple[int, str, str]:
    """Run the command with `model_dir` preopened as /model; (exit code, stdout, stderr)."""
    engine, mod = module
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    store = wasmtime.Store(engine)
    with tempfile.TemporaryDirectory() as d:
        paths = [os.path.join(d, n) for n in ("in", "out", "err")]
        Path(paths[0]).write_bytes(body)
        cfg = wasmtime.WasiConfig()
        cfg.argv = ["inference-wasi", "/model/model.safetensors", *args]
        cfg.preopen_dir(str(model_dir), "/model")
        cfg.stdin_file, cfg.stdout_file, cfg.stderr_file = paths
        store.set_wasi(cfg)
        instance = linker.instantiate(store, mod)
        try:
            instance.exports(store)["_start"](store)
            code = 0
        except wasmtime.ExitTrap as e:
            code = e.code
        return code, Path(paths[1]).read_text(), Path(paths[2]).read_text()


def rows_of(trained) -> list[list]:
    return [[None if isinstance(v, float) and v != v else v for v in row] for row in trained.rows.itertuples(index=False)]


@pytest.mark.parametrize("name", ["iris", "esg", "diabetes"])
def test_predictions_equal_the_native_core(module, request, name):
    trained = request.getfixturevalue(name)
    code, out, err = run_wasi(module, trained.dir, json.dumps(rows_of(trained)).encode())
    assert code == 0, err
    got = json.loads(out)
    assert got["model_id"] == trained.id
    # Exactly the native JSON: the same shortest-f32 numbers.
    assert got["predictions"] == trained.want


def test_other_protocols_and_errors(module, esg):
    rows = rows_of(esg)[:3]
    records = [dict(zip(esg.features, r)) for r in rows]
    code, out, _ = run_wasi(module, esg.dir, json.dumps({"dataframe_records": records}).encode(), "--protocol", "mlflow")
    assert code == 0
    assert json.loads(out)["predictions"] == esg.want[:3]
    body = {"inputs": [{"name": f, "shape": [3], "datatype": "BYTES" if f in esg.categorical else "FP32",
                        "data": [r[j] for r in rows]} for j, f in enumerate(esg.features)]}
    code, out, _ = run_wasi(module, esg.dir, json.dumps(body).encode(), "--protocol", "oip_v2")
    assert code == 0
    probs = next(o for o in json.loads(out)["outputs"] if o["name"] == "probabilities")
    assert probs["data"] == [p for w in esg.want[:3] for p in w["probabilities"]]
    code, out, _ = run_wasi(module, esg.dir, b"[[1, 2]]")
    assert code == 1
    assert json.loads(out)["error"] == "wrong_feature_count"
    code, out, _ = run_wasi(module, esg.dir, b"{not json")
    assert code == 1 and json.loads(out)["error"] == "malformed_json"
    code, _, err = run_wasi(module, esg.dir, b"[]", "--protocol", "nope")
    assert code == 2 and "unknown protocol" in err
