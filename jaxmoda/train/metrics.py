"""Metric logging from process 0: DIR/metrics.jsonl, TensorBoard events, and a one-line progress bar."""

from __future__ import annotations

import json
import logging
import os
import sys
from typing import Any

import jax

log = logging.getLogger(__name__)


class MetricWriter:
    """Appends one JSON object per log step; mirrors scalars to TensorBoard when enabled."""

    def __init__(self, workdir: str, *, tensorboard: bool = True, total_steps: int = 0, initial_step: int = 0,
                 progress_bar: bool = True):
        self.active = jax.process_index() == 0
        self.path = os.path.join(workdir, "metrics.jsonl")
        self.tb = None
        self.bar = None
        if not self.active:
            return
        self._drop_records_after(initial_step)
        if tensorboard:
            try:
                from tensorboardX import SummaryWriter
                self.tb = SummaryWriter(os.path.join(workdir, "tensorboard"), flush_secs=30)
            except ImportError:
                log.warning("tensorboardX is not installed; TensorBoard events are off (pip install tensorboardX)")
        if progress_bar:
            from tqdm.auto import tqdm
            self.bar = tqdm(total=total_steps, initial=initial_step, unit="step", dynamic_ncols=True,
                            file=sys.stderr, mininterval=1.0, smoothing=0.1)

    def _drop_records_after(self, step: int) -> None:
        """On resume, forget records of steps the restored checkpoint does not contain (they are redone)."""
        if not os.path.exists(self.path):
            return
        with open(self.path) as f:
            lines = [line for line in f if line.strip()]
        keep = [line for line in lines if json.loads(line).get("step", 0) <= step]
        if len(keep) != len(lines):
            from jaxmoda.io.atomic import write_text
            write_text(self.path, "".join(keep))

    def write(self, step: int, scalars: dict[str, Any]) -> None:
        if not self.active:
            return
        record = {"step": int(step)}
        record.update({k: float(v) for k, v in scalars.items()})
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self.tb is not None:
            for k, v in record.items():
                if k != "step":
                    self.tb.add_scalar(k, v, step)
        if self.bar is not None:
            self.bar.set_postfix_str(f"loss {record.get('loss', float('nan')):.4f}, "
                                     f"{record.get('steps_per_sec', 0.0):.2f} it/s", refresh=False)

    def advance(self, n: int = 1) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def add_image(self, tag: str, image_hwc_uint8, step: int) -> None:
        if self.tb is not None:
            self.tb.add_image(tag, image_hwc_uint8, step, dataformats="HWC")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.tb is not None:
            self.tb.close()


def read_metrics(workdir: str) -> list[dict]:
    """All records of DIR/metrics.jsonl, in order."""
    path = os.path.join(workdir, "metrics.jsonl")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]
