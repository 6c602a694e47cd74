# workerd config: serve the edge worker locally on 127.0.0.1:8787 (see README.md).
#
#   scripts/build-wasm.sh                                    # the package (inference-wasm/pkg)
#   (cd web/edge && npm install --no-package-lock)           # installs it: node_modules/@trainer/inference
#   cp models/<model_id>/model.safetensors web/edge/         # the built-in bundle (`: >` it for none)
#   npx workerd serve web/edge/config.capnp                  # 127.0.0.1:8787
#   MODELS_URL=http://127.0.0.1:9003 npx workerd serve web/edge/config.capnp   # + any model by id
#
# `--socket-addr http=127.0.0.1:PORT` overrides the port. Paths are relative to this file. The
# settings are read from the environment (unset = the default; see README.md).
using Workerd = import "/workerd/workerd.capnp";

const config :Workerd.Config = (
  services = [
    (name = "predict", worker = .predictWorker),
    # Where the worker's fetch() goes: public addresses and this machine (a local trainer serve).
    (name = "internet", network = (allow = ["public", "local"])),
  ],
  sockets = [ (name = "http", address = "127.0.0.1:8787", http = (), service = "predict") ],
);

const predictWorker :Workerd.Worker = (
  modules = [
    (name = "worker.js", esModule = embed "worker.js"),
    # The package's workerd entry, under the name worker.js imports; its relative imports
    # (./inference.js, ./inference_bg.wasm) resolve beside that name.
    (name = "@trainer/inference", esModule = embed "node_modules/@trainer/inference/workerd.js"),
    (name = "@trainer/inference.js", esModule = embed "node_modules/@trainer/inference/inference.js"),
    (name = "@trainer/inference_bg.wasm", wasm = embed "node_modules/@trainer/inference/inference_bg.wasm"),
    (name = "model.safetensors", data = embed "model.safetensors"),
  ],
  bindings = [
    (name = "MODELS_URL", fromEnvironment = "MODELS_URL"),
    (name = "MODELS_TOKEN", fromEnvironment = "MODELS_TOKEN"),
    (name = "DEFAULT_MODEL", fromEnvironment = "DEFAULT_MODEL"),
    (name = "MODEL_CACHE_ENTRIES", fromEnvironment = "MODEL_CACHE_ENTRIES"),
    (name = "MODEL_CACHE_BYTES", fromEnvironment = "MODEL_CACHE_BYTES"),
    (name = "MODEL_REVALIDATE_SECONDS", fromEnvironment = "MODEL_REVALIDATE_SECONDS"),
  ],
  compatibilityDate = "2024-11-01",
);
