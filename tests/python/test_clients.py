"""The peers' own clients against a real `trainer serve`: Triton's `tritonclient[http]`, the
`kserve` SDK (V1 and V2) and MLflow's documented request formats built with pandas. Every
client's predictions equal `trainer predict --json` on the same rows (max |dp| <= 1e-6, same
classes), for an all-numeric model (iris) and one with categorical and missing cells (ESG)."""

import asyncio
import json

import numpy as np
import pandas as pd
import pytest
import requests
import tritonclient.http as httpclient
from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig

from conftest import assert_same, serve


def host(base: str) -> str:
    return base.removeprefix("http://")


def predictions_from_v2(outputs: dict, n: int) -> list[dict]:
    probs = np.asarray(outputs["probabilities"]).reshape(n, -1)
    labels = [l.decode() if isinstance(l, bytes) else l for l in np.asarray(outputs["predicted_label"]).reshape(-1)]
    classes = np.asarray(outputs["predicted_class"]).reshape(-1)
    return [
        {"predicted_class": int(classes[i]), "predicted_label": labels[i], "probabilities": probs[i].tolist()}
        for i in range(n)
    ]


def triton_inputs(model, binary: bool) -> list:
    """One FP32 tensor for an all-numeric model; one input per feature (BYTES for categories) otherwise."""
    rows = model.rows
    if not model.categorical:
        x = rows.to_numpy(dtype=np.float32)
        t = httpclient.InferInput("input", list(x.shape), "FP32")
        t.set_data_from_numpy(x, binary_data=binary)
        return [t]
    inputs = []
    for name in model.features:
        col = rows[name]
        if name in model.categorical:
            x = np.array(["" if pd.isna(v) else str(v) for v in col], dtype=object)
            t = httpclient.InferInput(name, [len(x)], "BYTES")
        else:
            x = col.to_numpy(dtype=np.float32)  # NaN = missing
            t = httpclient.InferInput(name, [len(x)], "FP32")
        t.set_data_from_numpy(x, binary_data=binary)
        inputs.append(t)
    return inputs


@pytest.mark.parametrize("which", ["iris", "esg"])
@pytest.mark.parametrize("binary", [False, True])
def test_tritonclient(server, request, which, binary):
    model = request.getfixturevalue(which)
    c = httpclient.InferenceServerClient(url=host(server))
    assert c.is_server_live() and c.is_server_ready() and c.is_model_ready(model.id)
    md = c.get_model_metadata(model.id)
    assert md["name"] == model.id
    assert {o["name"] for o in md["outputs"]} == {"probabilities", "predicted_class", "predicted_label"}
    names = ["probabilities", "predicted_class", "predicted_label"]
    outputs = [httpclient.InferRequestedOutput(n, binary_data=binary) for n in names]
    r = c.infer(model.id, triton_inputs(model, binary), outputs=outputs, request_id="req-1")
    assert r.get_response()["id"] == "req-1"
    got = predictions_from_v2({n: r.as_numpy(n) for n in names}, len(model.rows))
    for i, (g, w) in enumerate(zip(got, model.want)):
        assert_same(g, w, 1e-6, f"{which} row {i}")
    # An output selection is honoured.
    r = c.infer(model.id, triton_inputs(model, binary), outputs=[httpclient.InferRequestedOutput("predicted_label", binary_data=binary)])
    assert [o["name"] for o in r.get_response()["outputs"]] == ["predicted_label"]
    # Errors are the protocol's {"error": ...}.
    with pytest.raises(Exception, match="not found"):
        c.infer("model_1999_01_01_001", triton_inputs(model, binary))


@pytest.mark.parametrize("which", ["iris", "esg"])
def test_kserve_sdk(server, request, which):
    model = request.getfixturevalue(which)

    async def go():
        v2 = InferenceRESTClient(RESTConfig(protocol="v2"))
        assert await v2.is_server_live(server)
        assert await v2.is_server_ready(server)
        assert await v2.is_model_ready(server, model.id)
        if model.categorical:
            inputs = []
            for name in model.features:
                col = model.rows[name]
                if name in model.categorical:
                    inputs.append(InferInput(name, [len(col)], "BYTES", ["" if pd.isna(v) else str(v) for v in col]))
                else:
                    inputs.append(InferInput(name, [len(col)], "FP32", [None if pd.isna(v) else float(v) for v in col]))
        else:
            x = model.rows.to_numpy(dtype=np.float64).tolist()
            inputs = [InferInput("input", [len(x), len(model.features)], "FP64", x)]
        res = await v2.infer(server, InferRequest(model_name=model.id, infer_inputs=inputs), model_name=model.id)
        assert res.model_name == model.id
        outputs = {o.name: o.data for o in res.outputs}
        got = predictions_from_v2(outputs, len(model.rows))
        await v2.close()

        v1 = InferenceRESTClient(RESTConfig(protocol="v1"))
        assert await v1.is_server_live(server)
        assert await v1.is_model_ready(server, model.id)
        records = json.loads(model.rows.to_json(orient="records"))
        res1 = await v1.infer(server, {"instances": records}, model_name=model.id)
        await v1.close()
        return got, res1["predictions"]

    got, v1 = asyncio.run(go())
    for i, (g, p, w) in enumerate(zip(got, v1, model.want)):
        assert_same(g, w, 1e-6, f"v2 row {i}")
        assert_same(p, w, 1e-6, f"v1 row {i}")


@pytest.mark.parametrize("which", ["iris", "esg"])
def test_mlflow_formats(workdir, models, request, which):
    model = request.getfixturevalue(which)
    with serve(models, workdir / "data", "--mlflow-model", model.id) as base:
        mlflow_formats(base, model)


def test_mlflow_uses_the_newest_model_by_default(server, esg):
    # ESG was trained last.
    r = requests.post(f"{server}/invocations", json={"dataframe_records": json.loads(esg.rows.head(3).to_json(orient="records"))})
    assert r.status_code == 200
    for g, w in zip(r.json()["predictions"], esg.want):
        assert_same(g, w)


def mlflow_formats(server, model):
    df = model.rows
    url = f"{server}/invocations"
    bodies = [
        ("application/json", json.dumps({"dataframe_split": json.loads(df.to_json(orient="split"))})),
        ("application/json", json.dumps({"dataframe_records": json.loads(df.to_json(orient="records"))})),
        ("application/json", json.dumps({"instances": json.loads(df.to_json(orient="records"))})),
        ("application/json", json.dumps({"inputs": {c: json.loads(df[c].to_json(orient="values")) for c in df}})),
        ("text/csv", df.to_csv()),
        ("text/csv; charset=UTF-8", df.to_csv(index=False)),
    ]
    for ctype, body in bodies:
        r = requests.post(url, data=body, headers={"content-type": ctype})
        assert r.status_code == 200, (ctype, body[:80], r.text)
        preds = r.json()["predictions"]
        for i, (g, w) in enumerate(zip(preds, model.want)):
            assert_same(g, w, 1e-6, f"{ctype} row {i}")
    # MLflow's own errors: none or two of the formats is 400; a non-UTF-8 charset is 415.
    r = requests.post(url, json={"rows": []})
    assert r.status_code == 400 and r.json()["error_code"] == "BAD_REQUEST"
    r = requests.post(url, json={"instances": [], "inputs": []})
    assert r.status_code == 400
    r = requests.post(url, data="{}", headers={"content-type": "application/json; charset=latin-1"})
    assert r.status_code == 415
    assert requests.get(f"{server}/ping").status_code == 200
    assert requests.get(f"{server}/version").text.count(".") == 2
