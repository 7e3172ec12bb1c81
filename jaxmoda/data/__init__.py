"""Input pipelines: image datasets as grain MapDatasets and per-process training batches.

Examples are {"image": float32 [S, S, C] in [-1, 1], "label": int32}; training
batches stack b = global_batch_size // process_count of them.
"""

from jaxmoda.data.config import default_data_config
from jaxmoda.data.pipeline import build_source, make_train_iterator

__all__ = ["build_source", "default_data_config", "make_train_iterator"]
