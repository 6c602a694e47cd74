#!/usr/bin/env python3
"""FastAPI + uvicorn + PyTorch reference of the documented predict endpoint.

The baseline for ``bench/http/bench.sh``: what ``trainer serve``'s
``POST /api/ml/predict`` would be as a typical Python service. It serves OUR bundles
(``<models-dir>/<model_id>/model.safetensors``), read with the ``safetensors`` package
and rebuilt as an equivalent eval-mode ``torch.nn.Sequential`` by
``bench/reference/bundle_torch.py`` (Linear -> activation -> Dropout -> BatchNorm1d per
hidden layer, then Linear), with the same preprocessing (fill values, label encoding,
StandardScaler from the bundle metadata) and output head (softmax, arg-max, label).

Request, as documented (a pydantic model)::

    {"data": {"features": [v1, v2, ...]}, "model_id": "model_..."}   # model_id optional

``data.features`` may also be a list of rows, or ``data.records`` a list of objects keyed
by column name (answered as ``{"predictions": [...]}``), like the Rust server.
Response: ``{"model_id", "predicted_class", "predicted_label", "confidence",
"probabilities"}`` (regression: ``{"model_id", "predicted_value"}``). Errors:
``{"error": kind, "message": ...}`` with 400 (bad row), 404 (no such model) or 422.

Serving choices (kept close to the Rust server, and favourable to this baseline):

* one uvicorn worker, uvloop + httptools when installed (``uvicorn[standard]``),
  access log off;
* an ``async def`` handler: the forward pass of a small MLP takes tens of microseconds,
  less than a thread-pool hop, so it runs on the event loop;
* ``torch.set_num_threads(--torch-threads)``, default 1 (single rows gain nothing from
  intra-op threads);
* models cached in memory by id and bundle mtime; the newest id is re-listed only when
  the models directory changes (as the Rust server's cache does).

Usage (the port 0 picks a free one; the line ``listening on http://HOST:PORT`` is printed
once the socket listens)::

    pip install -r bench/reference/requirements.txt
    python3 bench/http/fastapi_reference.py --models-dir models --host 127.0.0.1 --port 0
"""

import argparse
import os
import socket
import sys
import threading
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch
import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "reference"))
from bundle_torch import BundleModel, RowError  # noqa: E402

BUNDLE_FILE = "model.safetensors"


class PredictInput(BaseModel):
    """Rows: one row (``features: [...]``), many (``features: [[...], ...]``) or records."""

    features: Optional[List[Any]] = None
    records: Optional[List[Dict[str, Any]]] = None


class PredictRequest(BaseModel):
    """Body of ``POST /api/ml/predict``; rows under ``data`` (or at the top level)."""

    data: Optional[PredictInput] = None
    model_id: Optional[str] = None
    features: Optional[List[Any]] = None
    records: Optional[List[Dict[str, Any]]] = None


class ApiError(Exception):
    def __init__(self, status, kind, message):
        super().__init__(message)
        self.status, self.kind, self.message = status, kind, message


def valid_id(model_id):
    return (0 < len(model_id) <= 200 and not model_id.startswith(".")
            and not any(c in model_id for c in "/\\\0"))


class ModelCache:
    """Loaded bundles by id (reloaded when the file changes) and the newest id."""

    def __init__(self, models_dir):
        self.dir = Path(models_dir)
        self.entries = {}
        self.newest = (None, None)  # (dir mtime, id)
        self.lock = threading.Lock()

    def newest_id(self):
        try:
            mtime = self.dir.stat().st_mtime_ns
        except OSError:
            return None
        if self.newest[0] != mtime:
            found = []
            for d in self.dir.iterdir():
                if d.name.startswith("."):
                    continue
                try:
                    found.append((d.name, (d / BUNDLE_FILE).stat().st_mtime_ns))
                except OSError:
                    continue
            found.sort(reverse=True)  # newest first by id, then time
            self.newest = (mtime, found[0][0] if found else None)
        return self.newest[1]

    def get(self, model_id):
        not_found = ApiError(404, "model_not_found", f"model `{model_id}` not found")
        if not valid_id(model_id):
            raise not_found
        path = self.dir / model_id / BUNDLE_FILE
        try:
            mtime = path.stat().st_mtime_ns
        except OSError:
            raise not_found from None
        entry = self.entries.get(model_id)
        if entry is not None and entry[0] == mtime:
            return entry[1]
        with self.lock:
            try:
                model = BundleModel(path)
            except Exception as e:  # noqa: BLE001 - any load failure is a corrupt model
                raise ApiError(500, "corrupt_model", f"model `{model_id}` cannot be loaded: {e}") from e
            self.entries[model_id] = (mtime, model)
        return model


def create_app(models_dir):
    app = FastAPI(title="predict reference (FastAPI + PyTorch)")
    cache = ModelCache(models_dir)

    @app.exception_handler(ApiError)
    async def api_error(_request: Request, e: ApiError):
        return JSONResponse({"error": e.kind, "message": e.message}, status_code=e.status)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, e: RequestValidationError):
        return JSONResponse({"error": "validation_error", "message": str(e.errors())}, status_code=422)

    @app.get("/health")
    async def health():
        return {"status": "ok"}

    @app.post("/api/ml/predict")
    async def predict(req: PredictRequest):
        data = req.data if req.data and (req.data.features is not None or req.data.records is not None) \
            else PredictInput(features=req.features, records=req.records)
        model_id = req.model_id or cache.newest_id()
        if model_id is None:
            raise ApiError(404, "model_not_found", "no trained model is available: train one first")
        model = cache.get(model_id)
        pre = model.preprocessor

        def encode(i, fn, row):
            try:
                return fn(row)
            except RowError as e:
                prefix = "" if i is None else f"row {i}: "
                raise ApiError(400, e.kind, prefix + str(e)) from None

        if data.features is not None and data.records is not None:
            raise ApiError(422, "validation_error", "give either `features` or `records`, not both")
        if data.features is not None:
            rows = data.features
            if rows and all(isinstance(r, list) for r in rows):
                x = [encode(i, pre.encode_row, r) for i, r in enumerate(rows)]
                body = {"predictions": [model.prediction(o) for o in model.forward(x)]}
            else:
                x = [encode(None, pre.encode_row, rows)]
                body = model.prediction(model.forward(x)[0])
        elif data.records is not None:
            x = [encode(i, pre.encode_record, r) for i, r in enumerate(data.records)]
            body = {"predictions": [model.prediction(o) for o in model.forward(x)] if x else []}
        else:
            raise ApiError(422, "validation_error",
                           "missing `data.features` (one row or an array of rows) or `data.records`")
        return {"model_id": model_id, **body}

    return app


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=9004, help="0 picks a free port")
    p.add_argument("--models-dir", default="models")
    p.add_argument("--torch-threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.torch_threads)

    app = create_app(args.models_dir)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    sock.listen(2048)
    host, port = sock.getsockname()[:2]
    print(f"listening on http://{host}:{port} (pid {os.getpid()})", flush=True)
    config = uvicorn.Config(app, workers=1, log_level="warning", access_log=False)
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
