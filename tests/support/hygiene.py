"""A guard against tests that leave process-wide state behind.

pytest-xdist runs many tests in one process, so a test that installs an
event-loop policy, edits the environment, reconfigures logging, replaces a
signal handler, changes directory or sets OpenFeature's global provider
breaks whichever test happens to run next in that worker — a failure that
depends on test order and shows up on someone else's change. The guard takes
a fingerprint of that state before each test and fails the test that changed
it, naming what changed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from typing import Any

import structlog
from openfeature import api as openfeature

_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD)
# pytest itself keeps the running test's id here.
_PYTEST_OWN = frozenset({"PYTEST_CURRENT_TEST"})


def fingerprint() -> dict[str, Any]:
    """The process-wide state a test must leave as it found it."""
    root = logging.getLogger()
    return {
        "event-loop policy": type(asyncio.get_event_loop_policy()),
        "environment": {k: v for k, v in os.environ.items() if k not in _PYTEST_OWN},
        "working directory": os.getcwd(),
        "root logger level": root.level,
        "root logger handlers": [type(h) for h in root.handlers],
        "uvicorn.access disabled": logging.getLogger("uvicorn.access").disabled,
        "structlog filtering level": structlog.get_config()["wrapper_class"],
        "signal handlers": {int(s): signal.getsignal(s) for s in _SIGNALS},
        # OpenFeature's API is a process-wide singleton (orderly.flags.provider).
        "OpenFeature default provider": type(openfeature.provider_registry.get_default_provider()),
        "OpenFeature hooks": len(openfeature.get_hooks()),
        "OpenFeature evaluation context": openfeature.get_evaluation_context(),
    }


def changes(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """What differs between two fingerprints, one readable line each."""
    lines = []
    for key, old in before.items():
        new = after[key]
        if old == new:
            continue
        if key == "environment":
            added = sorted(set(new) - set(old))
            removed = sorted(set(old) - set(new))
            edited = sorted(k for k in set(old) & set(new) if old[k] != new[k])
            lines.append(f"environment: added {added}, removed {removed}, changed {edited}")
        else:
            lines.append(f"{key}: {old!r} -> {new!r}")
    return lines
