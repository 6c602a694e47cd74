"""Load a trainer bundle (``model.safetensors``) into PyTorch, for the benchmarks.

Used by ``bench/http/fastapi_reference.py`` (the FastAPI predict endpoint). It reimplements, in Python, what the
Rust inference core does with a bundle:

* the weights: tensors ``hidden.{i}.linear.weight/bias``,
  ``hidden.{i}.bn.weight/bias/running_mean/running_var`` and ``out.weight/bias``,
  loaded into ``Linear -> activation -> Dropout -> BatchNorm1d(eps)`` per hidden layer
  plus a final ``Linear``, as an ``nn.Sequential`` in eval mode (the same module layout
  as ``bench/reference/torch_pipeline.py``);
* the metadata: the JSON under ``__metadata__["bundle"]`` of the safetensors header;
* the preprocessing of one raw row (``encode_row``): missing values -> the train fill
  value, categories -> their index in the sorted train vocabulary (an unknown category
  is an error, as in the Rust core), then ``(x - mean) / scale`` in float32;
* the output head (``prediction``): softmax, arg-max, label, or the regression target
  un-scaled.

Errors in a row raise ``RowError(kind, message)`` with the Rust core's kinds
(``wrong_feature_count``, ``unknown_category``, ``not_a_number``, ...).

Requires: torch, numpy, safetensors (``pip install -r bench/reference/requirements.txt``).
"""

import json
import math

import numpy as np
import torch
from safetensors import safe_open
from torch import nn

METADATA_KEY = "bundle"

ACTIVATIONS = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,  # exact (erf) form, as the Rust core
    "tanh": nn.Tanh,
    "leaky_relu": lambda: nn.LeakyReLU(0.01),
    "sigmoid": nn.Sigmoid,
}

# Text cells that mean "missing" (compared case-insensitively after trimming), as in the core.
MISSING_TOKENS = {"", "na", "n/a", "nan", "-nan", "null", "none", "#n/a", "<na>"}


class RowError(ValueError):
    """A row the model cannot predict; ``kind`` is the API's machine-readable error kind."""

    def __init__(self, kind, message):
        super().__init__(message)
        self.kind = kind


# ------------------------------------------------------------------ loading
def read_bundle(path):
    """Return ``(metadata dict, {name: float32 torch.Tensor})`` of a ``model.safetensors``."""
    with safe_open(str(path), framework="pt") as f:
        header = f.metadata() or {}
        if METADATA_KEY not in header:
            raise ValueError(f"{path}: no __metadata__.{METADATA_KEY} entry (not a model bundle)")
        metadata = json.loads(header[METADATA_KEY])
        tensors = {name: f.get_tensor(name).to(torch.float32) for name in f.keys()}
    return metadata, tensors


def build_network(metadata, tensors):
    """The eval-mode ``nn.Sequential`` equivalent to the bundle's network (float32)."""
    arch = metadata["architecture"]
    eps = float(arch.get("batch_norm_eps", 1e-5))
    act = ACTIVATIONS[arch["activation"]]
    layers, width = [], int(arch["input_dim"])
    for h in arch["hidden_dims"]:
        layers += [nn.Linear(width, h), act(), nn.Dropout(float(arch["dropout_rate"])),
                   nn.BatchNorm1d(h, eps=eps)]
        width = h
    layers.append(nn.Linear(width, int(arch["output_dim"])))
    net = nn.Sequential(*layers)

    state = {}
    for i in range(len(arch["hidden_dims"])):
        lin, bn = 4 * i, 4 * i + 3
        for part in ("weight", "bias"):
            state[f"{lin}.{part}"] = tensors[f"hidden.{i}.linear.{part}"]
        for part in ("weight", "bias", "running_mean", "running_var"):
            state[f"{bn}.{part}"] = tensors[f"hidden.{i}.bn.{part}"]
        state[f"{bn}.num_batches_tracked"] = torch.tensor(0, dtype=torch.long)
    out = len(layers) - 1
    state[f"{out}.weight"] = tensors["out.weight"]
    state[f"{out}.bias"] = tensors["out.bias"]
    net.load_state_dict(state, strict=True)  # also checks every tensor's shape
    return net.eval()


# ------------------------------------------------------------ preprocessing
def _parse_number(text):
    """A text cell as a number (spaces, 1e3, +5, inf accepted), or None; NaN is not a number."""
    t = text.strip()
    if not t or "_" in t or t.lower() in ("nan", "+nan", "-nan"):
        return None
    try:
        return float(t)
    except ValueError:
        return None


def _number_as_category(x):
    """How a number reads as a category: ``3`` not ``3.0``; otherwise shortest round-trip."""
    if math.isfinite(x) and x == int(x) and abs(x) < 9.007199254740992e15:
        return str(int(x))
    return repr(float(x))


class Preprocessor:
    """Fill + label-encode + standardise, compiled once from the bundle metadata."""

    def __init__(self, metadata):
        p = metadata["preprocessing"]
        self.names = list(p["feature_names"])
        self.specs = []
        for f in p["features"]:
            if f["kind"] == "numeric":
                self.specs.append(("numeric", f.get("fill_value"), None))
            else:
                codes = {c: i for i, c in enumerate(f["categories"])}
                fill = f.get("fill_value")
                self.specs.append(("categorical", codes.get(fill) if fill is not None else None, codes))
        self.mean = np.asarray(p["scaler"]["mean"], dtype=np.float32)
        self.scale = np.asarray(p["scaler"]["scale"], dtype=np.float32)

    def _missing(self, i, fill):
        if fill is None:
            raise RowError("missing_value",
                           f"column `{self.names[i]}` is missing and the model has no fill value "
                           "(it was trained with missing_strategy \"drop\")")
        return float(fill)

    def _encode(self, i, v):
        kind, fill, codes = self.specs[i]
        name = self.names[i]
        if isinstance(v, bool):  # JSON true/false read as text, like the loader
            v = "true" if v else "false"
        if v is None:
            return self._missing(i, fill)
        if isinstance(v, (int, float)):
            x = float(v)
            if math.isnan(x):
                return self._missing(i, fill)
            if kind == "numeric":
                if math.isinf(x):
                    raise RowError("non_finite", f"column `{name}` got a non-finite number ({x})")
                return x
            v = _number_as_category(x)
        elif not isinstance(v, str):
            raise RowError("invalid_value",
                           f"column `{name}` got an unsupported value {json.dumps(v)} "
                           "(expected a number, a string or null)")
        if v.strip().lower() in MISSING_TOKENS:
            return self._missing(i, fill)
        if kind == "numeric":
            x = _parse_number(v)
            if x is None:
                raise RowError("not_a_number", f"column `{name}` expects a number, got {v!r}")
            return self._encode(i, x)
        code = codes.get(v)
        if code is None:
            raise RowError("unknown_category", f"unknown category {v!r} for column `{name}`")
        return float(code)

    def encode_row(self, values):
        """One positional row of raw values -> standardised float32 vector."""
        if len(values) != len(self.names):
            raise RowError("wrong_feature_count",
                           f"wrong number of features: expected {len(self.names)}, got {len(values)}")
        x = np.fromiter((self._encode(i, v) for i, v in enumerate(values)),
                        dtype=np.float32, count=len(values))
        return (x - self.mean) / self.scale

    def encode_record(self, record):
        """One row keyed by column name (absent = missing) -> standardised float32 vector."""
        return self.encode_row([record.get(n) for n in self.names])


# ------------------------------------------------------------------- model
class BundleModel:
    """A loaded bundle: preprocessing + eval-mode torch network + output head."""

    def __init__(self, path):
        self.metadata, tensors = read_bundle(path)
        self.network = build_network(self.metadata, tensors)
        self.preprocessor = Preprocessor(self.metadata)
        self.task = self.metadata["task_type"]
        self.classes = self.metadata.get("classes")
        self.target_scaler = self.metadata["preprocessing"].get("target_scaler")

    @torch.inference_mode()
    def forward(self, x):
        """Standardised rows (n x features, float32 numpy) -> raw network outputs (numpy)."""
        return self.network(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))).numpy()

    def prediction(self, out):
        """One row of raw outputs -> the API's prediction object."""
        if self.task == "regression":
            v = float(out[0])
            if self.target_scaler:
                v = v * self.target_scaler["scale"] + self.target_scaler["mean"]
            return {"predicted_value": v}
        z = np.exp(out - out.max())
        probs = z / z.sum()
        best = int(np.argmax(probs))  # first maximum, as the core
        return {
            "predicted_class": best,
            "predicted_label": self.classes[best] if self.classes else str(best),
            "confidence": float(probs[best]),
            "probabilities": [float(p) for p in probs],
        }

    def predict_rows(self, rows):
        """Positional raw rows -> predictions (one forward pass for all rows)."""
        x = np.stack([self.preprocessor.encode_row(r) for r in rows])
        return [self.prediction(o) for o in self.forward(x)]
