"""orderly's flags as an OpenFeature provider (``openfeature-sdk``), over the same evaluator.

    from openfeature import api
    from orderly.flags.provider import OrderlyProvider

    api.set_provider(OrderlyProvider())
    client = api.get_client()
    client.get_boolean_value("recommendations.model", False,
                             EvaluationContext(targeting_key=str(user.id)))

Mapping (as Unleash's own OpenFeature providers do): the targeting key is
Unleash's ``userId``; the attributes ``sessionId``, ``remoteAddress``,
``environment``, ``appName`` and ``currentTime`` are Unleash's fields of those
names, and every other attribute is a custom property. Booleans are
``is_enabled``; string, number and object values are the flag's variant
payload (``string``/``csv``, ``number``, ``json``), a string flag without a
payload answering the variant's name. An unknown flag is ``FLAG_NOT_FOUND``
(the caller's default), a disabled variant the caller's default with reason
``DISABLED``.

Evaluation is the process's in-memory snapshot (no database round trip), and
it is noted in the current request's scope like :mod:`orderly.flags.client`'s,
so a request that ends in a 5xx counts against the flag's guard either way.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

import orjson
from openfeature.evaluation_context import EvaluationContext
from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import FlagResolutionDetails, FlagValueType, Reason
from openfeature.provider import AbstractProvider, Metadata

from orderly.core import request_scope
from orderly.flags import client
from orderly.flags.engine import FlagContext, Snapshot, VariantResult

T = TypeVar("T")

_FIELDS = {
    "sessionId": "session_id",
    "remoteAddress": "remote_address",
    "environment": "environment",
    "appName": "app_name",
}


def flag_context(context: EvaluationContext | None) -> FlagContext:
    """An OpenFeature evaluation context as Unleash's (targeting key → ``userId``)."""
    if context is None:
        return FlagContext.of()
    fields: dict[str, Any] = {}
    properties: dict[str, str] = {}
    current_time: datetime | None = None
    for name, value in context.attributes.items():
        if name in _FIELDS:
            fields[_FIELDS[name]] = str(value)
        elif name == "currentTime":
            current_time = (
                value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
            )
        elif name == "userId" and context.targeting_key is None:
            fields["user_id"] = str(value)
        elif name == "properties" and isinstance(value, Mapping):
            properties.update({str(k): str(v) for k, v in value.items()})
        else:
            properties[name] = str(value)
    if context.targeting_key is not None:
        fields["user_id"] = context.targeting_key
    return FlagContext.of(current_time=current_time, properties=properties, **fields)


class OrderlyProvider(AbstractProvider):
    """Resolves OpenFeature flags from orderly's in-process snapshot."""

    def __init__(self, snapshot: Callable[[], Snapshot] = client.snapshot) -> None:
        """*snapshot* defaults to the process's runtime (what ``orderly.flags.client`` reads)."""
        super().__init__()
        self._snapshot = snapshot

    def get_metadata(self) -> Metadata:
        """The provider's name."""
        return Metadata(name="orderly")

    # ------------------------------------------------------------ booleans

    def resolve_boolean_details(
        self,
        flag_key: str,
        default_value: bool,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[bool]:
        """``is_enabled`` for the context."""
        snapshot = self._snapshot()
        if flag_key not in snapshot:
            return _not_found(flag_key, default_value)
        enabled = snapshot.is_enabled(flag_key, flag_context(evaluation_context))
        request_scope.note_flag(flag_key, enabled)
        return FlagResolutionDetails(
            value=enabled, reason=Reason.TARGETING_MATCH if enabled else Reason.DISABLED
        )

    # ------------------------------------------------------------ variants

    def resolve_string_details(
        self, flag_key: str, default_value: str, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[str]:
        """The variant's string payload (or its name when it has none)."""
        return self._variant(flag_key, default_value, evaluation_context, _as_string)

    def resolve_integer_details(
        self, flag_key: str, default_value: int, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[int]:
        """The variant's ``number`` payload as an integer."""
        return self._variant(flag_key, default_value, evaluation_context, _as_number(int))

    def resolve_float_details(
        self,
        flag_key: str,
        default_value: float,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[float]:
        """The variant's ``number`` payload as a float."""
        return self._variant(flag_key, default_value, evaluation_context, _as_number(float))

    def resolve_object_details(
        self,
        flag_key: str,
        default_value: Sequence[FlagValueType] | Mapping[str, FlagValueType],
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[Sequence[FlagValueType] | Mapping[str, FlagValueType]]:
        """The variant's ``json`` payload."""
        return self._variant(flag_key, default_value, evaluation_context, _as_object)

    def _variant(
        self,
        flag_key: str,
        default_value: T,
        evaluation_context: EvaluationContext | None,
        convert: Callable[[VariantResult], T],
    ) -> FlagResolutionDetails[T]:
        snapshot = self._snapshot()
        if flag_key not in snapshot:
            return _not_found(flag_key, default_value)
        variant = snapshot.variant(flag_key, flag_context(evaluation_context))
        request_scope.note_flag(flag_key, variant.feature_enabled)
        if not variant.enabled:
            return FlagResolutionDetails(value=default_value, reason=Reason.DISABLED)
        try:
            value = convert(variant)
        except (TypeError, ValueError) as exc:
            return FlagResolutionDetails(
                value=default_value,
                reason=Reason.ERROR,
                error_code=ErrorCode.TYPE_MISMATCH,
                error_message=f"variant {variant.name} of {flag_key}: {exc}",
                variant=variant.name,
            )
        return FlagResolutionDetails(value=value, reason=Reason.SPLIT, variant=variant.name)


def _not_found(flag_key: str, default_value: T) -> FlagResolutionDetails[T]:
    return FlagResolutionDetails(
        value=default_value,
        reason=Reason.ERROR,
        error_code=ErrorCode.FLAG_NOT_FOUND,
        error_message=f"No flag named {flag_key!r}.",
    )


def _payload(variant: VariantResult, *types: str) -> str | None:
    payload = variant.payload or {}
    if not payload:
        return None
    if payload.get("type") not in types:
        raise TypeError(f"payload is {payload.get('type')!r}, not {' or '.join(types)}")
    return str(payload.get("value", ""))


def _as_string(variant: VariantResult) -> str:
    value = _payload(variant, "string", "csv")
    return variant.name if value is None else value


def _as_number(kind: Callable[[str], T]) -> Callable[[VariantResult], T]:
    def convert(variant: VariantResult) -> T:
        value = _payload(variant, "number")
        if value is None:
            raise TypeError("variant has no number payload")
        return kind(value)

    return convert


def _as_object(
    variant: VariantResult,
) -> Sequence[FlagValueType] | Mapping[str, FlagValueType]:
    value = _payload(variant, "json")
    if value is None:
        raise TypeError("variant has no json payload")
    parsed = orjson.loads(value)
    if not isinstance(parsed, dict | list):
        raise TypeError("json payload is not an object or array")
    return parsed
