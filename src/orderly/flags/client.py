"""How orderly's own code asks flags: one small interface over the process's runtime.

    from orderly.flags import client as flags
    if flags.is_enabled("recommendations.model", flags.context(user_id=user.id)):
        ok = await call_model(...)
        flags.record_outcome("recommendations.model", ctx, ok=ok)

No database round trip: answers come from the in-memory snapshot. Before the
runtime is installed (CLI tools, unit tests) every flag is off, as an unknown
flag is in Unleash.
"""

from __future__ import annotations

from orderly.core import request_scope
from orderly.flags.engine import EMPTY, FlagContext, Snapshot, VariantResult
from orderly.flags.runtime import FlagRuntime

__all__ = [
    "FlagContext",
    "context",
    "install",
    "is_enabled",
    "record_outcome",
    "runtime",
    "snapshot",
    "uninstall",
    "variant",
]

_runtime: FlagRuntime | None = None

context = FlagContext.of


def install(runtime: FlagRuntime) -> None:
    """Make *runtime* the process's flag runtime (composition roots only)."""
    global _runtime
    _runtime = runtime


def uninstall(runtime: FlagRuntime) -> None:
    """Forget *runtime* if it is the installed one."""
    global _runtime
    if _runtime is runtime:
        _runtime = None


def runtime() -> FlagRuntime | None:
    """The installed runtime, if any."""
    return _runtime


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
    the failed call).
    """
    on = cohort if isinstance(cohort, bool) else snapshot().is_enabled(flag, cohort)
    scope = request_scope.current()
    if scope is not None:
        scope.reported.add(flag)
    if _runtime is not None:
        _runtime.record(flag, on, ok)
