"""Device meshes, logical-to-mesh shardings and multi-process start-up.

The mesh has the axes `data`, `fsdp`, `tensor` (Auto axis types: the compiler propagates shardings
from the annotated parameters and a few activation constraints). Parameter shardings come from the
logical names the model attached to each parameter and the rule table in the config.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Sequence

import jax
import numpy as np
from flax import nnx
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from jaxmoda.config import MESH_AXES, ConfigDict, mesh_shape
from jaxmoda.errors import ConfigError, DistributedError
from jaxmoda.nn.logical import logical_to_spec

log = logging.getLogger(__name__)


def maybe_initialize_distributed(config: ConfigDict) -> None:
    """Calls `jax.distributed.initialize` when the run is multi-process.

    Multi-process is recognised from the config (`distributed.num_processes > 1`) or from the
    environment of a cluster launcher (SLURM with several tasks, a TPU pod slice with several workers,
    or JAX_COORDINATOR_ADDRESS). Single-process runs are left alone.
    """
    if jax.distributed.is_initialized():
        return
    d = config.get("distributed", None)
    kwargs: dict[str, Any] = {}
    if d is not None and d.num_processes > 1:
        if not d.coordinator_address:
            raise ConfigError("config.distributed.num_processes > 1 needs config.distributed.coordinator_address=host:port")
        kwargs = dict(coordinator_address=d.coordinator_address, num_processes=d.num_processes,
                      process_id=d.process_id if d.process_id >= 0 else None)
    elif os.environ.get("JAX_COORDINATOR_ADDRESS") or int(os.environ.get("SLURM_NTASKS", "1")) > 1 \
            or "TPU_WORKER_HOSTNAMES" in os.environ and "," in os.environ["TPU_WORKER_HOSTNAMES"]:
        kwargs = {}  # jax auto-detects the cluster (SLURM, TPU metadata, JAX_* variables)
    else:
        return
    timeout = int(d.get("initialization_timeout", 300)) if d is not None else 300
    address = kwargs.get("coordinator_address") or os.environ.get("JAX_COORDINATOR_ADDRESS", "")
    process_id = kwargs.get("process_id")
    if process_id is None and os.environ.get("JAX_PROCESS_ID"):
        process_id = int(os.environ["JAX_PROCESS_ID"])
    if address and process_id not in (None, 0):
        wait_for_coordinator(address, timeout)  # the client would abort the process, not raise, on a timeout
    jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU collectives only; GPU/TPU ignore it
    jax.distributed.initialize(**kwargs, initialization_timeout=timeout)
    log.info("jax.distributed: process %d of %d", jax.process_index(), jax.process_count())


def wait_for_coordinator(address: str, timeout_s: float) -> None:
    """Polls host:port until process 0's coordination service accepts a connection; one clear error if not."""
    import socket
    import time
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"coordinator address {address!r} is not host:port; set config.distributed.coordinator_address")
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=2.0):
                return
        except OSError as e:
            if time.monotonic() >= deadline:
                raise DistributedError(
                    f"the coordinator {address} did not answer within {timeout_s:.0f} s ({e.strerror or e}); start process 0 "
                    "there or fix config.distributed.coordinator_address (timeout: config.distributed.initialization_timeout)"
                ) from None
            time.sleep(0.5)


def check_batch_layout(config: ConfigDict) -> None:
    """Multi-process runs: each process feeds its own batch rows, so a process must hold whole `tensor`
    groups (a tensor axis spanning processes would make them replicas fed different rows)."""
    if jax.process_count() == 1:
        return
    tensor = mesh_shape(config, jax.device_count())["tensor"]
    if jax.local_device_count() % tensor:
        raise ConfigError(f"config.mesh.tensor={tensor} spans processes ({jax.local_device_count()} devices each); "
                          "use a tensor axis that divides the devices of one process, or one process per node")


def make_mesh(config: ConfigDict, devices: Sequence[jax.Device] | None = None) -> Mesh:
    """Builds the (data, fsdp, tensor) mesh from `config.mesh`, Auto axis types."""
    devices = list(devices) if devices is not None else jax.devices()
    sizes = mesh_shape(config, len(devices))
    shape = tuple(sizes[a] for a in MESH_AXES)
    slices = len({getattr(d, "slice_index", 0) for d in devices})
    if slices > 1 and getattr(devices[0], "platform", "tpu") == "tpu":  # multi-slice TPU: only `data` crosses the slow inter-slice network (DCN)
        if sizes["data"] % slices:
            raise ConfigError(f"config.mesh.data={sizes['data']} must be a multiple of the {slices} TPU slices "
                              "(data parallelism runs across slices); e.g. --config.mesh.data=" + str(slices))
        from jax.experimental import mesh_utils
        device_array = mesh_utils.create_hybrid_device_mesh(
            (sizes["data"] // slices, sizes["fsdp"], sizes["tensor"]), (slices, 1, 1), devices=devices)
        return Mesh(device_array, MESH_AXES, axis_types=(AxisType.Auto,) * len(MESH_AXES))
    try:
        from jax.experimental import mesh_utils
        device_array = mesh_utils.create_device_mesh(shape, devices=devices)
    except Exception:  # CPU or unusual topologies: plain row-major order is as good
        device_array = np.asarray(devices).reshape(shape)
    return Mesh(device_array, MESH_AXES, axis_types=(AxisType.Auto,) * len(MESH_AXES))


def rules_of(config: ConfigDict) -> tuple:
    return tuple((name, tuple(axes) if isinstance(axes, list) else axes) for name, axes in config.logical_axis_rules)


def state_shardings(abstract_state: Any, mesh: Mesh, rules: Sequence) -> Any:
    """NamedShardings for an abstract nnx.State whose Params carry logical `out_sharding` names.

    Returns a pure dict (same structure as `nnx.to_pure_dict(abstract_state)`).
    """
    logical = nnx.to_pure_dict(nnx.get_partition_spec(abstract_state))
    shapes = nnx.to_pure_dict(abstract_state)

    def one(spec, shape_struct):
        spec = spec if isinstance(spec, PartitionSpec) else PartitionSpec()
        names = tuple(spec) + (None,) * (len(shape_struct.shape) - len(spec))
        return NamedSharding(mesh, logical_to_spec(names, rules, mesh, shape_struct.shape, move_dropped=True))

    return jax.tree.map(one, logical, shapes, is_leaf=lambda x: isinstance(x, PartitionSpec))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def batch_sharding(mesh: Mesh, rules: Sequence, ndim: int) -> NamedSharding:
    """Sharding of a batch array: leading axis over the `act_batch` mesh axes, the rest replicated."""
    spec = logical_to_spec(("act_batch",) + (None,) * (ndim - 1), rules, mesh)
    return NamedSharding(mesh, spec)


def global_batch(local_batch: dict[str, np.ndarray], mesh: Mesh, rules: Sequence) -> dict[str, jax.Array]:
    """Assembles each process's slice of the batch into global arrays sharded over the batch axes."""
    return {k: jax.make_array_from_process_local_data(batch_sharding(mesh, rules, np.ndim(v)), np.asarray(v))
            for k, v in local_batch.items()}


def fraction_replicated(params: Any) -> float:
    """Fraction of parameter bytes that are fully replicated (a cheap guard against a missing rule)."""
    total = rep = 0
    for x in jax.tree.leaves(params):
        n = x.size * x.dtype.itemsize
        total += n
        if x.sharding.is_fully_replicated:
            rep += n
    return rep / max(total, 1)
