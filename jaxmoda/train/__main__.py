"""python -m jaxmoda.train --config configs/dit/tiny.py --workdir DIR [--config.key=value ...]

Trains the configured model, or resumes it from DIR's latest checkpoint (data iterator included).
"""

from __future__ import annotations

import argparse
import logging

from jaxmoda.errors import cli_main
from jaxmoda.logs import setup_logging


def main(argv: list[str]) -> int:
    from jaxmoda.config import load_config, split_overrides
    overrides, rest = split_overrides(argv)
    parser = argparse.ArgumentParser(prog="python -m jaxmoda.train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="config file, optionally path.py:arg")
    parser.add_argument("--workdir", required=True, help="run folder: config.json, metrics, checkpoints, samples")
    args = parser.parse_args(rest)
    setup_logging()
    config = load_config(args.config, overrides)
    from jaxmoda.train.loop import train
    summary = train(config, args.workdir)
    logging.getLogger("jaxmoda").info("done at step %d%s", summary["step"],
                                      " (preempted, checkpoint saved)" if summary["preempted"] else "")
    return 0


if __name__ == "__main__":
    cli_main(main)
