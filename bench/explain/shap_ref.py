"""The shap side of bench/explain/run.sh, and its table.

  rows   write the rows to explain: the first N complete rows (no missing cell) of the ESG
         data set without its target, and the first N rows of the 10-feature CSV without
         its label.
  table  run shap on the same models and rows and print the markdown table: shap's
         Permutation explainer on the ESG model (15 features) and its Exact explainer on the
         10-feature model, both with shap.maskers.Independent over our exported background
         (all of its rows) and f = the model's ONNX export (`trainer export --format onnx`,
         the whole pipeline) in onnxruntime, one thread; then every number against ours
         (wasm in Node and native `trainer predict --explain`, measured by run.sh).

Categorical columns reach shap as integer codes (its maskers take numbers); f turns them
back into the category text the ONNX graph takes. The output explained is the probability of
the class ours explained (the predicted class), so the values compare one to one.
"""

import argparse
import json
import sys
import time

import numpy as np
import onnxruntime as ort
import pandas as pd
import shap


def write_rows(a):
    esg = pd.read_csv(a.esg).drop(columns=[a.esg_target]).dropna()
    if len(esg) < a.n:
        raise SystemExit(f"{a.esg} has only {len(esg)} complete rows (N={a.n})")
    esg.head(a.n).to_csv(a.out_esg, index=False)
    num = pd.read_csv(a.num).drop(columns=[a.num_target])
    if len(num) < a.n:
        raise SystemExit(f"{a.num} has only {len(num)} rows (N={a.n})")
    num.head(a.n).to_csv(a.out_num, index=False)


class OnnxModel:
    """f(X) for shap: the ONNX pipeline in onnxruntime; X holds category codes for text columns."""

    def __init__(self, path, frame, background):
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.inter_op_num_threads = 1
        self.session = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        self.inputs = self.session.get_inputs()
        self.features = list(frame.columns)
        self.categories = {}
        for c in self.features:
            if not pd.api.types.is_numeric_dtype(frame[c]) or not pd.api.types.is_numeric_dtype(background[c]):
                self.categories[c] = np.array(sorted(set(frame[c].astype(str)) | set(background[c].astype(str))), dtype=object)

    def encode(self, frame):
        cols = []
        for c in self.features:
            if c in self.categories:
                index = {v: i for i, v in enumerate(self.categories[c])}
                cols.append(frame[c].astype(str).map(index).to_numpy(np.float64))
            else:
                cols.append(frame[c].to_numpy(np.float64))
        return np.stack(cols, axis=1)

    def __call__(self, x):
        x = np.asarray(x, dtype=np.float64)
        if len(self.inputs) == 1:  # one N x F float tensor
            feed = {self.inputs[0].name: x.astype(np.float32)}
        else:  # one N x 1 tensor per column
            feed = {}
            for j, c in enumerate(self.features):
                col = x[:, j : j + 1]
                if c in self.categories:
                    feed[c] = self.categories[c][col.astype(np.int64)]
                else:
                    feed[c] = col.astype(np.float32)
        return self.session.run(["probabilities"], feed)[0].astype(np.float64)


def time_shap(explainer, x, classes, **kw):
    """Explain row by row (each call timed); φ of each row's class, and the times in ms."""
    explainer(x[:1], silent=True, **kw)  # warm-up: shap compiles (numba) on its first call
    values, times = [], []
    for i in range(len(x)):
        t0 = time.perf_counter()
        e = explainer(x[i : i + 1], silent=True, **kw)
        times.append((time.perf_counter() - t0) * 1e3)
        values.append(e.values[0, :, classes[i]])
    return np.array(values), np.array(times)


def load_native(path, features):
    out = []
    with open(path) as f:
        for line in f:
            e = json.loads(line)["explanation"]
            out.append({"class": e["class"], "method": e["method"], "values": [e["values"][c] for c in features]})
    return out


def table(a):
    esg_rows = pd.read_csv(a.esg_rows)
    num_rows = pd.read_csv(a.num_rows)
    n = len(esg_rows)
    wasm_esg = json.load(open(a.wasm_esg))
    wasm_num = json.load(open(a.wasm_num))
    features_esg, features_num = wasm_esg["features"], wasm_num["features"]
    native_esg = load_native(a.native_esg, features_esg)
    native_num = load_native(a.native_num, features_num)
    exact_esg = load_native(a.native_exact_esg, features_esg)
    n_exact = len(exact_esg)

    phi_wasm_esg = np.array([e["values"] for e in wasm_esg["explanations"]])
    phi_native_esg = np.array([e["values"] for e in native_esg])
    phi_exact_esg = np.array([e["values"] for e in exact_esg])
    phi_wasm_num = np.array([e["values"] for e in wasm_num["explanations"]])
    phi_native_num = np.array([e["values"] for e in native_num])
    cls_esg = [e["class"] for e in wasm_esg["explanations"]]
    cls_num = [e["class"] for e in wasm_num["explanations"]]

    # shap, Permutation on the ESG model: the same forward-pass budget per background row as
    # ours (about 4·n·permutations masked rows), unless SHAP_MAX_EVALS says otherwise.
    bg_esg = pd.read_csv(a.esg_bg)[features_esg]
    f_esg = OnnxModel(a.esg_onnx, esg_rows[features_esg], bg_esg)
    masker = shap.maskers.Independent(f_esg.encode(bg_esg), max_samples=len(bg_esg))
    max_evals = a.shap_max_evals or 4 * len(features_esg) * 2
    perm = shap.explainers.Permutation(f_esg, masker, seed=0)
    x_esg = f_esg.encode(esg_rows[features_esg])
    print(f"[explain] shap Permutation (max_evals {max_evals}) on {n} ESG rows", flush=True, file=sys.stderr)
    phi_shap_esg, t_shap_esg = time_shap(perm, x_esg, cls_esg, max_evals=max_evals)

    bg_num = pd.read_csv(a.num_bg)[features_num]
    f_num = OnnxModel(a.num_onnx, num_rows[features_num], bg_num)
    exact = shap.explainers.Exact(f_num, shap.maskers.Independent(f_num.encode(bg_num), max_samples=len(bg_num)))
    print(f"[explain] shap Exact on {n} 10-feature rows", flush=True, file=sys.stderr)
    phi_shap_num, t_shap_num = time_shap(exact, f_num.encode(num_rows[features_num]), cls_num)

    # Errors against exact (the first n_exact rows, native exact at 15 features).
    err = lambda phi: np.abs(phi[:n_exact] - phi_exact_esg)
    e_wasm, e_shap = err(phi_wasm_esg), err(phi_shap_esg)

    p = lambda t, q: float(np.percentile(t, q))
    wasm_esg_t, wasm_num_t = np.array(wasm_esg["times_ms"]), np.array(wasm_num["times_ms"])
    ms = lambda v: f"{v:.2f}" if v < 100 else f"{v:.0f}"
    ratio = lambda x, y: f"{x / y:.3g}×" if y > 0 else "—"
    e = lambda v: f"{v:.2e}"
    nf_esg, nf_num = len(features_esg), len(features_num)
    lines = [
        f"| measurement | ours, wasm (Node, 1 thread) | ours, native (`trainer predict --explain`) | shap {shap.__version__} (f = ONNX in onnxruntime {ort.__version__}) | ours ÷ shap |",
        "|---|---:|---:|---:|---:|",
        f"| ESG ({nf_esg} features, 3 categorical), default options ({wasm_esg['method']}, 2 permutations, 100 background rows): ms per explanation, p50 ({n} rows) "
        f"| {ms(p(wasm_esg_t, 50))} | {ms(a.native_esg_ms)} (mean) | {ms(p(t_shap_esg, 50))} (Permutation, max_evals {max_evals}; mean {ms(t_shap_esg.mean())}) "
        f"| wasm p50 {ratio(p(wasm_esg_t, 50), p(t_shap_esg, 50))}, native mean {ratio(a.native_esg_ms, t_shap_esg.mean())} |",
        f"| ESG, ms per explanation, p99 | {ms(p(wasm_esg_t, 99))} | — | {ms(p(t_shap_esg, 99))} | wasm {ratio(p(wasm_esg_t, 99), p(t_shap_esg, 99))} |",
        f"| ESG, error against exact: max \\|φ − φ_exact\\| ({n_exact} rows × {nf_esg} features) | {e(e_wasm.max())} | "
        f"{e(np.abs(phi_native_esg[:n_exact] - phi_exact_esg).max())} | {e(e_shap.max())} | {ratio(e_wasm.max(), e_shap.max())} |",
        f"| ESG, error against exact: mean \\|φ − φ_exact\\| | {e(e_wasm.mean())} | "
        f"{e(np.abs(phi_native_esg[:n_exact] - phi_exact_esg).mean())} | {e(e_shap.mean())} | {ratio(e_wasm.mean(), e_shap.mean())} |",
        f"| ESG, exact (2^{nf_esg} coalitions): ms per explanation ({n_exact} rows, the reference above) | — | {ms(a.native_exact_esg_ms)} (mean) | — | |",
        f"| {nf_num} numeric features, 3 classes, default options ({wasm_num['method']}, 2^{nf_num} coalitions, 100 background rows): ms per explanation, p50 ({n} rows) "
        f"| {ms(p(wasm_num_t, 50))} | {ms(a.native_num_ms)} (mean) | {ms(p(t_shap_num, 50))} (Exact; mean {ms(t_shap_num.mean())}) "
        f"| wasm p50 {ratio(p(wasm_num_t, 50), p(t_shap_num, 50))}, native mean {ratio(a.native_num_ms, t_shap_num.mean())} |",
        f"| {nf_num} features, ms per explanation, p99 | {ms(p(wasm_num_t, 99))} | — | {ms(p(t_shap_num, 99))} | wasm {ratio(p(wasm_num_t, 99), p(t_shap_num, 99))} |",
        f"| {nf_num} features, agreement with shap Exact: max \\|Δφ\\| ({n} rows × {nf_num} features) | {e(np.abs(phi_wasm_num - phi_shap_num).max())} "
        f"| {e(np.abs(phi_native_num - phi_shap_num).max())} | — | |",
        f"| agreement wasm vs native: max \\|Δφ\\| (ESG default / {nf_num} features exact) | {e(np.abs(phi_wasm_esg - phi_native_esg).max())} / "
        f"{e(np.abs(phi_wasm_num - phi_native_num).max())} | | | |",
        f"| inference_bg.wasm, gzip -9 (the whole package's .wasm, explanations included) | {a.wasm_gzip / 1024:.1f} KiB | — | — | |",
    ]
    lines += [
        "",
        f"φ: Shapley values of the explained (predicted) class's probability; exact reference: native `--explain-method exact` "
        f"on the first {n_exact} of the {n} ESG rows. Native time = (wall of `trainer predict --explain` − wall without) ÷ rows, "
        f"{a.cpus} CPUs. shap is timed per row (`explainer(x[i:i+1])`, after one warm-up call), its time includes f; "
        f"ESG rows: the first {n} complete rows of trainer/data/esg_ratings.csv.",
    ]
    print("\n".join(lines))


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("rows")
    r.add_argument("--esg", required=True)
    r.add_argument("--esg-target", default="esg_rating")
    r.add_argument("--num", required=True)
    r.add_argument("--num-target", default="label")
    r.add_argument("--n", type=int, required=True)
    r.add_argument("--out-esg", required=True)
    r.add_argument("--out-num", required=True)
    t = sub.add_parser("table")
    for k in ["esg-rows", "num-rows", "esg-bg", "num-bg", "esg-onnx", "num-onnx", "wasm-esg", "wasm-num",
              "native-esg", "native-num", "native-exact-esg"]:
        t.add_argument(f"--{k}", required=True)
    for k in ["native-esg-ms", "native-num-ms", "native-exact-esg-ms"]:
        t.add_argument(f"--{k}", type=float, required=True)
    t.add_argument("--wasm-gzip", type=int, required=True)
    t.add_argument("--shap-max-evals", type=int, default=0)
    t.add_argument("--cpus", default="?")
    a = ap.parse_args()
    write_rows(a) if a.cmd == "rows" else table(a)


if __name__ == "__main__":
    main()
