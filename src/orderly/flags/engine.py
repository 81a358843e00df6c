"""In-process evaluation: a compiled snapshot of every flag, on Unleash's own engine.

Evaluation is Unleash's ``yggdrasil`` engine (the Rust core of Unleash's SDKs,
shipped on PyPI as ``yggdrasil-engine``): it implements the client
specification exactly (every strategy, operator, segment, variant and
dependency rule; ``benchmarks/flag_eval.py`` and ``tests/flags/test_spec.py``).
Its Python wrapper serialises the context with ``json`` and makes a second FFI
call per question (≈ 30 µs here); we call the same engine's C entry points
(``check_enabled``/``check_variant``, the ABI every Unleash SDK binds) with a
context encoded once per request by orjson: ≈ 3–5 µs per flag.

A :class:`Snapshot` is immutable: a change builds a new one and swaps the
reference, so a reader never sees half an update.
"""

from __future__ import annotations

import ctypes
import dataclasses
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import orjson
from yggdrasil_engine.engine import UnleashEngine

DISABLED_VARIANT = "disabled"


@dataclasses.dataclass(frozen=True, slots=True)
class FlagContext:
    """Who is asking: Unleash's context fields; ``encoded`` is the engine's JSON, built once."""

    user_id: str | None = None
    session_id: str | None = None
    remote_address: str | None = None
    environment: str | None = None
    app_name: str | None = None
    current_time: datetime | None = None
    properties: Mapping[str, str] = dataclasses.field(default_factory=dict)
    encoded: bytes = b""

    @classmethod
    def of(
        cls,
        *,
        user_id: object = None,
        session_id: str | None = None,
        remote_address: str | None = None,
        environment: str | None = None,
        app_name: str | None = None,
        current_time: datetime | None = None,
        properties: Mapping[str, str] | None = None,
    ) -> FlagContext:
        """A context with its engine encoding (ids may be UUIDs or ints; they become text)."""
        props = {str(k): str(v) for k, v in (properties or {}).items()}
        body: dict[str, Any] = {"properties": props}
        uid = str(user_id) if user_id is not None else None
        for key, value in (
            ("userId", uid),
            ("sessionId", session_id),
            ("remoteAddress", remote_address),
            ("environment", environment),
            ("appName", app_name),
            ("currentTime", current_time.isoformat() if current_time else None),
        ):
            if value is not None:
                body[key] = value
        return cls(
            uid,
            session_id,
            remote_address,
            environment,
            app_name,
            current_time,
            props,
            orjson.dumps(body),
        )

    @classmethod
    def from_unleash(cls, context: Mapping[str, Any]) -> FlagContext:
        """A context from Unleash's camelCase JSON (the spec's and the evaluate API's shape)."""
        current = context.get("currentTime")
        when = datetime.fromisoformat(current.replace("Z", "+00:00")) if current else None
        raw = dict(context)
        props = raw.get("properties") or {}
        ctx = cls.of(
            user_id=raw.get("userId"),
            session_id=raw.get("sessionId"),
            remote_address=raw.get("remoteAddress"),
            environment=raw.get("environment"),
            app_name=raw.get("appName"),
            current_time=when,
            properties={str(k): str(v) for k, v in props.items() if v is not None},
        )
        if current:  # pass the caller's text through unchanged: the engine parses it
            body = orjson.loads(ctx.encoded)
            body["currentTime"] = current
            ctx = dataclasses.replace(ctx, encoded=orjson.dumps(body))
        return ctx


EMPTY_CONTEXT = FlagContext.of()


@dataclasses.dataclass(frozen=True, slots=True)
class VariantResult:
    """A variant as Unleash reports it (``disabled`` when none applies)."""

    name: str
    enabled: bool
    feature_enabled: bool
    payload: dict[str, str] | None = None


class Snapshot:
    """Every flag and segment at one configuration version, ready to evaluate."""

    __slots__ = ("_engine", "_lib", "_names", "_state", "features", "segments", "version")

    def __init__(
        self,
        features: Sequence[Mapping[str, Any]],
        segments: Sequence[Mapping[str, Any]],
        version: int,
    ) -> None:
        self.features = tuple(features)
        self.segments = tuple(segments)
        self.version = version
        self._names = frozenset(str(feature["name"]) for feature in self.features)
        self._engine = UnleashEngine()
        self._engine.take_state(
            orjson.dumps(
                {"version": 2, "features": list(self.features), "segments": list(self.segments)}
            ).decode()
        )
        self._lib = self._engine.lib
        self._state = self._engine.state

    def _ask(self, function: Any, name: str, context: FlagContext) -> Any:
        pointer = function(
            self._state, name.encode(), context.encoded or EMPTY_CONTEXT.encoded, b"{}"
        )
        try:
            raw = ctypes.cast(pointer, ctypes.c_char_p).value
        finally:
            self._lib.free_response(pointer)
        response = orjson.loads(raw or b"{}")
        return response.get("value") if response.get("status_code") == "Ok" else None

    def is_enabled(self, name: str, context: FlagContext = EMPTY_CONTEXT) -> bool:
        """Whether *name* is on for *context*; an unknown flag is off (as in Unleash)."""
        return self._ask(self._lib.check_enabled, name, context) is True

    def variant(self, name: str, context: FlagContext = EMPTY_CONTEXT) -> VariantResult:
        """The variant of *name* for *context* (``disabled`` for an unknown flag)."""
        value = self._ask(self._lib.check_variant, name, context)
        if not isinstance(value, dict):
            return VariantResult(DISABLED_VARIANT, False, False)
        return VariantResult(
            name=str(value.get("name", DISABLED_VARIANT)),
            enabled=bool(value.get("enabled", False)),
            feature_enabled=bool(value.get("featureEnabled", False)),
            payload=value.get("payload"),
        )

    def __contains__(self, name: object) -> bool:
        """Whether a flag named *name* exists in this snapshot."""
        return name in self._names

    @property
    def names(self) -> list[str]:
        """Every flag's name."""
        return [str(feature["name"]) for feature in self.features]


EMPTY = Snapshot((), (), 0)
