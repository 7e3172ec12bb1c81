"""User-facing errors and the one-line error reporting of the entry points.

Every problem a person can fix (a config key, an input file, a checkpoint, a mesh) is raised as a
`JaxmodaError` whose message names the thing and the fix. Entry points run through `cli_main`, which
prints that message as one line on stderr and exits with status 2 instead of a traceback.
"""

from __future__ import annotations

import sys
from typing import Callable, NoReturn


class JaxmodaError(Exception):
    """An error a user can fix; its message is one line naming the thing and the fix."""


class ConfigError(JaxmodaError, ValueError):
    """A bad configuration key, value or mesh."""


class DataError(JaxmodaError, ValueError):
    """A bad dataset path or input file."""


class CheckpointError(JaxmodaError, ValueError):
    """A checkpoint that cannot be read or does not match the model."""


class WorkdirError(JaxmodaError, OSError):
    """A work directory that cannot be created or written."""


class DistributedError(JaxmodaError, RuntimeError):
    """A multi-process start-up that cannot complete (coordinator unreachable, process layout wrong)."""


def fail(message: str) -> NoReturn:
    """Prints `error: message` on stderr and exits with status 2."""
    print(f"error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(2)


def cli_main(main: Callable[[list[str]], int | None]) -> NoReturn:
    """Runs `main(argv)`; user errors end as one line on stderr and exit status 2."""
    try:
        code = main(sys.argv[1:])
    except JaxmodaError as e:
        fail(str(e))
    except KeyboardInterrupt:
        fail("interrupted")
    raise SystemExit(code or 0)
