"""Logging set-up shared by the entry points: jaxmoda at INFO, chatty libraries at WARNING."""

import logging


def setup_logging(level: int = logging.INFO) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("absl").setLevel(logging.WARNING)          # orbax's per-save progress lines
    logging.getLogger("jax._src.xla_bridge").setLevel(logging.ERROR)  # "no TPU found" on CPU/GPU hosts
    logging.getLogger("matplotlib").setLevel(logging.WARNING)


def emit(text: str, path: str = "") -> None:
    """Prints a report and, when `path` is given, also writes it there (with a final newline)."""
    print(text)
    if path:
        with open(path, "w") as f:
            f.write(text + "\n")
