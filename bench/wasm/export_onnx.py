#!/usr/bin/env python3
"""Export a trainer bundle (``model.safetensors``) to ONNX, for onnxruntime-web.

Used by ``bench/wasm/run.sh`` to run the same model in onnxruntime-web as in our wasm
build. The graph is built node by node with the ``onnx`` package (no exporter
heuristics), from the eval-mode network of ``bench/reference/bundle_torch.py``:

    features [N, F] (raw numeric values)
      -> Sub(scaler.mean) -> Div(scaler.scale)             # the bundle's StandardScaler
      -> per hidden layer: Gemm(W, b, transB=1) -> activation -> BatchNormalization(eps)
         (Dropout is the identity in eval mode and is left out)
      -> Gemm(out.weight, out.bias) -> Softmax(axis=-1)
    -> probabilities [N, classes]

The standardisation is part of the graph, so onnxruntime-web and ``Model.predictBatch``
take the same raw rows and do the same work. Numeric-only classification models are
supported (categorical features need label encoding outside a tensor graph). Opset 17,
IR version 8.

The export is checked before it is written: onnx's checker, then onnx's reference
evaluator against the PyTorch model on random rows; the max |Δp| is printed on stderr.

Usage:
    python3 bench/wasm/export_onnx.py --bundle MODEL_DIR/model.safetensors --out model.onnx

Requires: torch, numpy, safetensors, onnx (``pip install -r bench/reference/requirements.txt``).
"""

import argparse
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "reference"))
from bundle_torch import BundleModel  # noqa: E402

OPSET = 17
IR_VERSION = 8


def build_graph(model):
    meta = model.metadata
    arch = meta["architecture"]
    if meta["task_type"] != "classification":
        sys.exit("export_onnx: only classification bundles are supported")
    if any(f["kind"] != "numeric" for f in meta["preprocessing"]["features"]):
        sys.exit("export_onnx: the bundle has categorical features; only numeric ones are supported")
    eps = float(arch.get("batch_norm_eps", 1e-5))
    n_in, n_out = int(arch["input_dim"]), int(arch["output_dim"])
    state = {k: v.detach().numpy().astype(np.float32) for k, v in model.network.state_dict().items()
             if k.endswith(("weight", "bias", "running_mean", "running_var"))}
    pre = model.preprocessor

    inits, nodes = [], []

    def const(name, array):
        inits.append(numpy_helper.from_array(np.asarray(array, dtype=np.float32), name))
        return name

    def node(op, inputs, name, **attrs):
        nodes.append(helper.make_node(op, inputs, [name], name=name, **attrs))
        return name

    def activation(x, name):
        act = arch["activation"]
        if act == "relu":
            return node("Relu", [x], name)
        if act == "leaky_relu":
            return node("LeakyRelu", [x], name, alpha=0.01)
        if act == "tanh":
            return node("Tanh", [x], name)
        if act == "sigmoid":
            return node("Sigmoid", [x], name)
        if act == "gelu":  # exact form 0.5·x·(1 + erf(x/√2)); Gelu itself needs opset 20
            e = node("Erf", [node("Div", [x, const(f"{name}_sqrt2", np.sqrt(2.0))], f"{name}_div")],
                     f"{name}_erf")
            one = node("Add", [e, const(f"{name}_one", 1.0)], f"{name}_add")
            return node("Mul", [node("Mul", [x, one], f"{name}_mul"), const(f"{name}_half", 0.5)], name)
        sys.exit(f"export_onnx: unsupported activation {act}")

    x = node("Sub", ["features", const("scaler_mean", pre.mean)], "centered")
    x = node("Div", [x, const("scaler_scale", pre.scale)], "standardized")
    for i in range(len(arch["hidden_dims"])):
        lin, bn = 4 * i, 4 * i + 3
        x = node("Gemm", [x, const(f"h{i}_w", state[f"{lin}.weight"]), const(f"h{i}_b", state[f"{lin}.bias"])],
                 f"h{i}_linear", transB=1)
        x = activation(x, f"h{i}_act")
        x = node("BatchNormalization",
                 [x, const(f"h{i}_bn_gamma", state[f"{bn}.weight"]), const(f"h{i}_bn_beta", state[f"{bn}.bias"]),
                  const(f"h{i}_bn_mean", state[f"{bn}.running_mean"]),
                  const(f"h{i}_bn_var", state[f"{bn}.running_var"])],
                 f"h{i}_bn", epsilon=eps)
    out = len(arch["hidden_dims"]) * 4
    x = node("Gemm", [x, const("out_w", state[f"{out}.weight"]), const("out_b", state[f"{out}.bias"])],
             "logits", transB=1)
    node("Softmax", [x], "probabilities", axis=-1)

    graph = helper.make_graph(
        nodes, "trainer_mlp",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", n_in])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", n_out])],
        initializer=inits,
    )
    onnx_model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                                   producer_name="bench/wasm/export_onnx.py")
    onnx_model.ir_version = IR_VERSION
    onnx_model.doc_string = f"model_id={meta['model_id']}"
    return onnx_model


def check(onnx_model, model, rows=512, seed=0):
    """max |Δp| between the ONNX graph (reference evaluator) and the PyTorch model."""
    pre = model.preprocessor
    rng = np.random.default_rng(seed)
    raw = (pre.mean + pre.scale * rng.standard_normal((rows, len(pre.mean)))).astype(np.float32)
    (got,) = ReferenceEvaluator(onnx_model).run(None, {"features": raw})
    logits = model.forward((raw - pre.mean) / pre.scale)
    z = np.exp(logits - logits.max(axis=1, keepdims=True))
    want = z / z.sum(axis=1, keepdims=True)
    return float(np.abs(got - want).max())


def main():
    p = argparse.ArgumentParser(description="Export a trainer bundle to ONNX.")
    p.add_argument("--bundle", required=True, help="model.safetensors (or its directory)")
    p.add_argument("--out", required=True, help="output .onnx file")
    args = p.parse_args()
    bundle = Path(args.bundle)
    if bundle.is_dir():
        bundle = bundle / "model.safetensors"
    model = BundleModel(bundle)
    onnx_model = build_graph(model)
    onnx.checker.check_model(onnx_model, full_check=True)
    dp = check(onnx_model, model)
    if not dp < 1e-4:
        sys.exit(f"export_onnx: the ONNX graph disagrees with the PyTorch model (max |Δp| = {dp:.3g})")
    onnx.save(onnx_model, args.out)
    print(f"wrote {args.out} ({Path(args.out).stat().st_size} bytes); "
          f"ONNX vs PyTorch on 512 random rows: max |Δp| = {dp:.2e}", file=sys.stderr)


if __name__ == "__main__":
    main()
