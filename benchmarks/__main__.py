"""``python -m benchmarks`` = ``orderly bench`` (see ``orderly bench --help``)."""

from __future__ import annotations

import sys

from orderly.cli import main

if __name__ == "__main__":
    sys.argv = [sys.argv[0], "bench", *sys.argv[1:]]
    main()
