"""One process of the multi-process test: python tests/dist_worker.py PORT NUM_PROCESSES PROCESS_ID.

Joins a jax.distributed job on 127.0.0.1 (CPU collectives over gloo), runs one data-parallel train
step of the tiny DiT on its slice of a fixed global batch, and prints the loss as JSON.
"""

import json
import os
import sys

os.environ["XLA_FLAGS"] = ""
os.environ["JAX_PLATFORMS"] = "cpu"
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402

jax.config.update("jax_cpu_collectives_implementation", "gloo")


def main():
    port, nproc, pid = (int(a) for a in sys.argv[1:4])
    jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}", num_processes=nproc, process_id=pid,
                               initialization_timeout=60)
    from jaxmoda.train.setup import build_training
    from tests.helpers import tiny_config

    run = build_training(tiny_config())
    full = run.task.example_batch(run.config.batch_size)
    per = run.config.batch_size // nproc
    local = {k: v[pid * per:(pid + 1) * per] for k, v in full.items()}
    state, metrics = run.step(run.state, run.global_batch(local))
    print(json.dumps({"process": jax.process_index(), "devices": jax.device_count(), "loss": float(metrics["loss"])}),
          flush=True)
    jax.distributed.shutdown()


if __name__ == "__main__":
    main()
