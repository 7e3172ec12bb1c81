"""Shared defaults for every jaxmoda training config: mesh, logical-axis rules, optimizer, checkpoints.

Model code names only logical axes; `logical_axis_rules` maps each to mesh axes (`data`, `fsdp`,
`tensor`). A mesh axis of size 1 costs nothing, so one table serves every mesh shape: FSDP shards
weights over `fsdp`, `tensor` splits heads and MLP width, the batch runs over `data` and `fsdp`.
"""

import ml_collections

# (logical name, mesh axes). Weights first, then activations.
LOGICAL_AXIS_RULES = (
    ("embed", "fsdp"),          # model width of weight matrices
    ("mlp", "tensor"),          # MLP hidden width
    ("heads", "tensor"),        # attention heads
    ("head_dim", None),
    ("qkv", None),              # the 3 of a fused q/k/v projection
    ("adaln", "tensor"),        # adaLN modulation outputs (6 x width)
    ("classes", None),          # label embedding rows
    ("patch", None),            # flattened patch pixels
    ("freq", None),             # sinusoidal timestep features
    ("positions", None),        # rows of learned position tables
    ("layers", None),           # stacked (scanned) blocks
    ("act_batch", ("data", "fsdp")),
    ("act_tokens", None),
    ("act_embed", None),
    ("act_heads", "tensor"),
    ("act_mlp", "tensor"),
)


def get_common():
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.total_steps = 1000
    c.batch_size = 32          # global batch, split over data*fsdp devices
    c.microbatches = 1         # gradient accumulation: the batch runs in this many sequential slices
    c.scan_layers = True       # block stacks as lax.scan (fast compile); False unrolls them in the train step
    c.log_every = 10
    c.checkpoint_every = 500
    c.sample_every = 500
    c.keep_checkpoints = 3
    c.async_checkpointing = True
    c.export_params = True     # params-only (EMA) export beside the checkpoints at the end

    c.mesh = ml_collections.ConfigDict({"data": -1, "fsdp": 1, "tensor": 1})
    c.logical_axis_rules = LOGICAL_AXIS_RULES
    c.distributed = ml_collections.ConfigDict({
        "coordinator_address": "",   # host:port; empty = auto-detect (TPU, SLURM) or single process
        "num_processes": 0,
        "process_id": -1,
        "initialization_timeout": 300,  # seconds to wait for the coordinator, then one clear error
    })

    c.optimizer = ml_collections.ConfigDict({
        "name": "adamw",
        "learning_rate": 1e-4,
        "schedule": "constant",       # constant | cosine
        "warmup_steps": 0,
        "decay_steps": 0,             # cosine: steps after warmup to decay to zero
        "b1": 0.9,
        "b2": 0.999,
        "eps": 1e-8,
        "weight_decay": 0.0,
        "grad_clip": 1.0,             # global-norm clip; 0 disables
    })
    c.ema_decay = 0.9999
    c.ema_memory_kind = "device"     # "pinned_host": the EMA copy lives in host memory (frees device memory)
    c.ema_warmup = True              # decay = min(ema_decay, (1+step)/(10+step)): useful on short runs

    c.num_samples = 16               # sample grid size during training
    c.tensorboard = True
    c.progress_bar = True
    return c
