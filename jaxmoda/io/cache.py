"""The cache folder for generated data and converted weights: $JAXMODA_CACHE, else ~/.cache/jaxmoda."""

import os


def cache_root() -> str:
    return os.environ.get("JAXMODA_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "jaxmoda")
