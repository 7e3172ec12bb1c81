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
    from jaxmoda import parallel
    from jaxmoda.tasks import get_task
    from jaxmoda.train.state import create_train_state, make_optimizer
    from jaxmoda.train.step import ShardedStep, make_train_step
    from tests.helpers import tiny_config

    config = tiny_config()
    mesh = parallel.make_mesh(config)
    rules = parallel.rules_of(config)
    task = get_task(config)
    tx, schedule = make_optimizer(config.optimizer)
    state, shardings, graphdef = create_train_state(task.build_model, tx, mesh, rules, config.seed)
    full = task.example_batch(config.batch_size)
    per = config.batch_size // nproc
    local = {k: v[pid * per:(pid + 1) * per] for k, v in full.items()}
    step = ShardedStep(make_train_step(task.loss, graphdef, tx, schedule, ema_decay=0.99, ema_warmup=False),
                       mesh, rules, shardings, full)
    state, metrics = step(state, parallel.global_batch(local, mesh, rules))
    print(json.dumps({"process": jax.process_index(), "devices": jax.device_count(), "loss": float(metrics["loss"])}),
          flush=True)
    jax.distributed.shutdown()


if __name__ == "__main__":
    main()
