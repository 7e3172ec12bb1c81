"""Test set-up: 8 fake CPU devices, set before jax is imported anywhere; cheap compiles.

The suite is dominated by XLA compile time of small programs that run for milliseconds, so tests
compile without LLVM's expensive passes (the same numbers, 15-20% less wall time) and share one
persistent compilation cache for the session, subprocesses included (identical programs built by
different tests compile once).
"""

import atexit
import os
import shutil
import tempfile

# Compiler flags for every test process; subprocesses get these without the device count.
FAST_COMPILE_FLAGS = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
os.environ["JAXMODA_TEST_XLA_FLAGS"] = FAST_COMPILE_FLAGS
os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + f" {FAST_COMPILE_FLAGS} --xla_force_host_platform_device_count=8"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
_CACHE = tempfile.mkdtemp(prefix="jaxmoda-test-xla-cache-")
atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)
os.environ["JAX_COMPILATION_CACHE_DIR"] = _CACHE
os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"

from absl import flags  # noqa: E402

# grain's multiprocessing workers read absl flags; outside absl.app they must be marked parsed.
flags.FLAGS.mark_as_parsed()

import jax  # noqa: E402

jax.config.update("jax_threefry_partitionable", True)
