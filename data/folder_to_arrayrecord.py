#!/usr/bin/env python
"""Writes a folder of images as ArrayRecord shards; same as python -m jaxmoda.data.arrayrecord.

Example:
    python data/folder_to_arrayrecord.py --in ~/ffhq --out ~/ffhq_ar --shards 16 --size 256 --no-class-subdirs
"""

from jaxmoda.data.arrayrecord import main
from jaxmoda.errors import cli_main

if __name__ == "__main__":
    cli_main(main)
