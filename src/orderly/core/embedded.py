"""The embedded PostgreSQL: a real server from the ``pgserver`` wheel, in the data dir.

Used when no ``ORDERLY_DATABASE_URL`` is configured, so ``orderly serve`` needs
no setup and still runs the same SQL as production. The server is stopped when
the last process using it exits.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

from orderly.core.telemetry import get_logger

log = get_logger(__name__)
logging.getLogger("pgserver").setLevel(logging.WARNING)


class EmbeddedPostgres:
    """A handle on the embedded server; ``url`` is a libpq URL over its Unix socket."""

    def __init__(self, data_dir: Path) -> None:
        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset (containers); /tmp is fine here.
            warnings.simplefilter("ignore")
            import pgserver

        self.pgdata = (data_dir / "pg").resolve()
        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        self._server: Any = pgserver.get_server(  # type: ignore[attr-defined]
            self.pgdata, cleanup_mode="stop"
        )
        self.url: str = self._server.get_uri("postgres")
        log.info("embedded_postgres_started", pgdata=str(self.pgdata))

    def stop(self) -> None:
        """Release this process's handle; the server stops when no process holds one."""
        self._server.cleanup()
