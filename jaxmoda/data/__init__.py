"""Input pipelines: image datasets as grain MapDatasets and per-process training batches.

Examples are {"image": float32 [S, S, C] in [-1, 1], "label": int32}; training
batches stack b = global_batch_size // process_count of them.
"""

from jaxmoda.data.config import default_data_config


def __getattr__(name):
    # grain is imported only when a pipeline is built, so configs and benchmarks load without it.
    if name in ("build_source", "make_train_iterator"):
        from jaxmoda.data import pipeline
        return getattr(pipeline, name)
    raise AttributeError(f"module 'jaxmoda.data' has no attribute {name!r}")


__all__ = ["build_source", "default_data_config", "make_train_iterator"]
