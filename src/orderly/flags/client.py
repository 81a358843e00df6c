"""How orderly's own code asks flags: one small interface over the process's runtime.

    from orderly.flags import client as flags
    if flags.is_enabled("recommendations.model", flags.context(user_id=user.id)):
        ok = await call_model(...)
        flags.record_outcome("recommendations.model", ctx, ok=ok)

No database round trip: answers come from the in-memory snapshot. Before the
runtime is installed (CLI tools, unit tests) every flag is off, as an unknown
flag is in Unleash. Outcomes go to the process's recorder, when it has one
(``flags/lifecycle.py`` decides; without one they are not counted).
"""

from __future__ import annotations

from orderly.core import request_scope
from orderly.flags.engine import EMPTY, FlagContext, Snapshot, VariantResult
from orderly.flags.outcomes import OutcomeRecorder
from orderly.flags.runtime import FlagRuntime

__all__ = [
    "FlagContext",
    "context",
    "install",
    "is_enabled",
    "record_outcome",
    "recorder",
    "runtime",
    "snapshot",
    "uninstall",
    "variant",
]

_runtime: FlagRuntime | None = None
_recorder: OutcomeRecorder | None = None

context = FlagContext.of


def install(runtime: FlagRuntime, recorder: OutcomeRecorder | None) -> None:
    """Make *runtime* the process's flag runtime and *recorder* its outcome recorder."""
    global _runtime, _recorder
    _runtime, _recorder = runtime, recorder


def uninstall(runtime: FlagRuntime) -> None:
    """Forget *runtime* (and its recorder) if it is the installed one."""
    global _runtime, _recorder
    if _runtime is runtime:
        _runtime, _recorder = None, None


def runtime() -> FlagRuntime | None:
    """The installed runtime, if any."""
    return _runtime


def recorder() -> OutcomeRecorder | None:
    """The installed outcome recorder (None when this process records no outcomes)."""
    return _recorder


def snapshot() -> Snapshot:
    """The snapshot evaluations read now."""
    return _runtime.snapshot if _runtime is not None else EMPTY


def is_enabled(flag: str, ctx: FlagContext | None = None) -> bool:
    """Whether *flag* is on for *ctx*; the current request is counted in that flag's cohort."""
    enabled = snapshot().is_enabled(flag, ctx or FlagContext())
    request_scope.note_flag(flag, enabled)
    return enabled


def variant(flag: str, ctx: FlagContext | None = None) -> VariantResult:
    """The variant of *flag* for *ctx* (``disabled`` when off or unknown)."""
    result = snapshot().variant(flag, ctx or FlagContext())
    request_scope.note_flag(flag, result.feature_enabled)
    return result


def record_outcome(flag: str, cohort: FlagContext | bool, ok: bool) -> None:
    """Record one outcome of a code path guarded by *flag* (cohort: on/off or the context).

    Within a request, a recorded outcome replaces the request's own 5xx-based
    outcome for that flag (so a fallback that saved the request still counts
    the failed call). Without a recorder in this process, nothing is counted.
    """
    if _recorder is None:
        return
    on = cohort if isinstance(cohort, bool) else snapshot().is_enabled(flag, cohort)
    scope = request_scope.current()
    if scope is not None:
        scope.reported.add(flag)
    _recorder.record(flag, on, ok)
