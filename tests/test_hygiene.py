"""The leak guard in tests/conftest.py notices each kind of process-wide state."""

from __future__ import annotations

import asyncio
import logging
import os
import signal

import uvloop

from tests.support import hygiene


def test_guard_names_an_event_loop_policy_change() -> None:
    before = hygiene.fingerprint()
    original = asyncio.get_event_loop_policy()
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    try:
        changed = hygiene.changes(before, hygiene.fingerprint())
    finally:
        asyncio.set_event_loop_policy(original)
    assert len(changed) == 1
    assert changed[0].startswith("event-loop policy")


def test_guard_names_environment_logging_signal_and_cwd_changes(tmp_path: os.PathLike[str]) -> None:
    before = hygiene.fingerprint()
    cwd = os.getcwd()
    root = logging.getLogger()
    level = root.level
    handler = signal.getsignal(signal.SIGHUP)
    os.environ["ORDERLY_HYGIENE_PROBE"] = "1"
    root.setLevel(logging.DEBUG if level != logging.DEBUG else logging.INFO)
    # Whatever it was (a process started by nohup ignores SIGHUP already), change it.
    signal.signal(signal.SIGHUP, signal.SIG_DFL if handler == signal.SIG_IGN else signal.SIG_IGN)
    os.chdir(tmp_path)
    try:
        changed = hygiene.changes(before, hygiene.fingerprint())
    finally:
        os.chdir(cwd)
        signal.signal(signal.SIGHUP, handler)
        root.setLevel(level)
        del os.environ["ORDERLY_HYGIENE_PROBE"]
    kinds = {line.split(":")[0] for line in changed}
    assert kinds == {"environment", "root logger level", "signal handlers", "working directory"}
    assert "ORDERLY_HYGIENE_PROBE" in next(line for line in changed if line.startswith("env"))
    assert hygiene.changes(before, hygiene.fingerprint()) == []
