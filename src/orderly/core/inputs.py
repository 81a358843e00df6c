"""The base of every request body: strict scalars, no unknown fields, no NUL characters.

FastAPI parses the JSON first and validates the resulting Python objects, so
pydantic's ``strict=True`` would refuse what JSON cannot carry natively (a UUID,
a date or an enum value are strings in JSON). :class:`Input` is strict where
lax mode would silently coerce — ``int``, ``float`` and ``bool`` accept only
their own JSON type (``"1"``, ``true`` or ``1.0`` for a quantity, ``0`` for a
flag are 422) — and lax where a string is the JSON form of the value.

PostgreSQL's ``text`` and ``jsonb`` reject the NUL character, so a string with
one anywhere in the body (keys of free-form objects included) is refused here,
with its location, instead of failing in the database.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Annotated, Any, ClassVar, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    GetCoreSchemaHandler,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema
from pydantic_core import PydanticCustomError, core_schema

__all__ = [
    "NUL",
    "SINGLE_LINE",
    "Input",
    "IsoDate",
    "IsoDateTime",
    "Omittable",
    "nul_location",
]

NUL = "\x00"
# Scalar types whose lax mode coerces from other JSON types (str → int, 1 → True…).
_STRICT_SCALARS = frozenset({"int", "float", "bool"})

T = TypeVar("T")


def _tighten(schema: Any) -> None:
    """Mark every int/float/bool validator in a core schema strict (in place)."""
    if isinstance(schema, dict):
        if schema.get("type") in _STRICT_SCALARS:
            schema["strict"] = True
        for value in schema.values():
            _tighten(value)
    elif isinstance(schema, list):
        for value in schema:
            _tighten(value)


def nul_location(value: Any, where: str = "") -> str | None:
    """The dotted path of the first string (or object key) holding a NUL, else None."""
    if isinstance(value, str):
        return (where or "body") if NUL in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            path = f"{where}.{key}" if where else str(key)
            if isinstance(key, str) and NUL in key:
                return path
            found = nul_location(item, path)
            if found is not None:
                return found
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            found = nul_location(item, f"{where}.{index}" if where else str(index))
            if found is not None:
                return found
    return None


def _drop_null_defaults(schema: dict[str, Any]) -> None:
    """An omittable field's default is "absent", not ``null`` (which it refuses)."""
    for field in schema.get("properties", {}).values():
        if isinstance(field, dict) and "default" in field and field["default"] is None:
            del field["default"]


class Input(BaseModel):
    """A request body: unknown fields rejected, scalars not coerced, no NUL characters."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_drop_null_defaults)
    #: A body whose use case must see NUL characters itself (login counts such an attempt).
    allows_nul: ClassVar[bool] = False

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        """The model's schema with strict int/float/bool validators."""
        schema = handler(source)
        _tighten(schema)
        return schema

    @model_validator(mode="before")
    @classmethod
    def _refuse_nul(cls, data: Any) -> Any:
        if cls.allows_nul:
            return data
        where = nul_location(data)
        if where is not None:
            raise PydanticCustomError(
                "string_nul",
                "must not contain NUL characters (at {where})",
                {"where": where},
            )
        return data


def _refuse_null(value: T | None) -> T:
    if value is None:
        raise PydanticCustomError("not_null", "may be omitted, but not null")
    return value


_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_ISO_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}")


def _iso(pattern: re.Pattern[str], what: str) -> Any:
    def check(value: Any) -> Any:
        # pydantic's lax date parsing takes "0" as a Unix timestamp; the API promises RFC 3339.
        if isinstance(value, str) and pattern.match(value):
            return value
        if isinstance(value, date):  # already parsed (date, or datetime for IsoDateTime)
            return value
        raise PydanticCustomError("iso_format", f"must be {what}")

    return BeforeValidator(check)


IsoDate = Annotated[date, _iso(_ISO_DATE, "a date as YYYY-MM-DD")]
"""A calendar date written YYYY-MM-DD (query or body)."""
IsoDateTime = Annotated[datetime, _iso(_ISO_DATETIME, "an RFC 3339 date-time")]
"""A timestamp written in RFC 3339 (never a bare number)."""

SINGLE_LINE = r"^[^\x00-\x1f\x7f]*$"
"""No control characters: the text ends up in e-mail subjects and log lines."""

Omittable = Annotated[T | SkipJsonSchema[None], AfterValidator(_refuse_null)]
"""A PATCH field: optional (omitted means unchanged) but never ``null``; the schema says so.

Constraints go inside: ``Omittable[Annotated[int, Field(ge=0)]] = None``.
"""
