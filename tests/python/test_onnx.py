"""`trainer export --format onnx`: the ONNX graph of the whole pipeline passes the onnx checker
and, run by onnxruntime (CPUExecutionProvider), predicts what `trainer predict --json` does on
rows with missing and categorical cells (max |dp| <= 1e-5, same classes)."""

import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
import pytest

from conftest import assert_same, run


@pytest.mark.parametrize("which", ["iris", "esg"])
def test_onnx_export_runs_in_onnxruntime(workdir, models, request, which):
    model = request.getfixturevalue(which)
    path = workdir / f"{which}.onnx"
    run("export", "--models-dir", str(models), "--model", model.id, "--format", "onnx", "--out", str(path))
    proto = onnx.load(path)
    onnx.checker.check_model(proto, full_check=True)
    opsets = {o.domain: o.version for o in proto.opset_import}
    assert opsets == {"": 17, "ai.onnx.ml": 3}
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "N"
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rows = model.rows
    if model.categorical:
        feeds = {}
        for name in model.features:
            col = rows[name]
            if name in model.categorical:
                feeds[name] = np.array([["" if pd.isna(v) else str(v)] for v in col], dtype=object)
            else:
                feeds[name] = col.to_numpy(dtype=np.float32).reshape(-1, 1)
        assert rows[model.categorical].isna().any().any() and rows.drop(columns=model.categorical).isna().any().any(), "the rows must include missing cells of both kinds"
    else:
        feeds = {"input": rows.to_numpy(dtype=np.float32)}
    probs, classes, labels = sess.run(["probabilities", "predicted_class", "predicted_label"], feeds)
    for i, w in enumerate(model.want):
        got = {"predicted_class": int(classes[i]), "predicted_label": str(labels[i]), "probabilities": probs[i].tolist()}
        assert_same(got, w, 1e-5, f"{which} row {i}")


def test_onnx_export_of_a_regression_maps_back_to_target_units(workdir, models, diabetes):
    m = diabetes
    path = workdir / "diabetes.onnx"
    run("export", "--models-dir", str(models), "--model", m.id, "--format", "onnx", "--out", str(path))
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (values,) = sess.run(["predicted_value"], {"input": m.rows.to_numpy(dtype=np.float32)})
    for v, w in zip(values[:, 0], m.want):
        assert abs(v - w["predicted_value"]) <= 1e-5 * max(1, abs(w["predicted_value"]))
