# workerd config: serve the edge worker locally on 127.0.0.1:8787.
#
#   cp ../pkg/inference.js ../pkg/inference_bg.wasm .        # the wasm build (scripts/build-wasm.sh)
#   cp ../../models/<model_id>/model.safetensors .           # the bundle to serve
#   npx workerd serve config.capnp                           # from web/edge/
#   curl -s localhost:8787/predict -H 'content-type: application/json' -d '{"features": [...]}'
#
# `--socket-addr http=127.0.0.1:PORT` overrides the port. Paths are relative to this file.
using Workerd = import "/workerd/workerd.capnp";

const config :Workerd.Config = (
  services = [ (name = "predict", worker = .predictWorker) ],
  sockets = [ (name = "http", address = "127.0.0.1:8787", http = (), service = "predict") ],
);

const predictWorker :Workerd.Worker = (
  modules = [
    (name = "worker.js", esModule = embed "worker.js"),
    (name = "inference.js", esModule = embed "inference.js"),
    (name = "inference_bg.wasm", wasm = embed "inference_bg.wasm"),
    (name = "model.safetensors", data = embed "model.safetensors"),
  ],
  compatibilityDate = "2024-11-01",
);
