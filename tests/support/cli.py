"""Run the real ``orderly`` command in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run_orderly(
    *args: str, database_url: str, data_dir: Path, stdin: str = "", **env: str
) -> subprocess.CompletedProcess[str]:
    """``python -m orderly ARGS`` against *database_url*, with a clean ORDERLY_* environment."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ORDERLY_")}
    clean.update(
        ORDERLY_DATABASE_URL=database_url,
        ORDERLY_DATA_DIR=str(data_dir),
        ORDERLY_LOG_LEVEL="WARNING",
        **env,
    )
    return subprocess.run(
        [sys.executable, "-m", "orderly", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=clean,
        timeout=120,
        check=False,
    )
