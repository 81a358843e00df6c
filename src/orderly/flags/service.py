"""Flag use cases: CRUD, import/export (Unleash format), evaluation; every change audited."""

from __future__ import annotations

from typing import Any

from orderly import errors
from orderly.audit import service as audit
from orderly.audit.schemas import AuditContext
from orderly.core.db import Tx
from orderly.core.telemetry import get_logger
from orderly.flags import repository
from orderly.flags.engine import FlagContext, Snapshot
from orderly.flags.schemas import (
    Evaluation,
    Feature,
    FlagsDocument,
    Segment,
    VariantRead,
)

log = get_logger(__name__)


def definition(feature: Feature) -> dict[str, Any]:
    """The stored (and exported) JSON of a flag."""
    return feature.model_dump(mode="json", exclude_none=True)


async def list_flags(tx: Tx, *, after: str | None, limit: int) -> list[Feature]:
    """Flags by name."""
    rows = await repository.list_flags(tx, after=after, limit=limit)
    return [Feature.model_validate(row.definition) for row in rows]


async def get_flag(tx: Tx, name: str) -> Feature:
    """One flag, or NotFound."""
    row = await repository.get_flag(tx, name)
    if row is None:
        raise errors.NotFound("No such flag.")
    return Feature.model_validate(row.definition)


async def save_flag(
    tx: Tx, context: AuditContext, feature: Feature, *, action: str | None = None
) -> tuple[Feature, bool]:
    """Create or replace a flag; audited with before/after. True when it was created."""
    before = await repository.get_flag(tx, feature.name, lock=True)
    after = definition(feature)
    await repository.upsert_flag(tx, feature.name, after)
    await repository.bump_version(tx)
    verb = action or ("flag.updated" if before is not None else "flag.created")
    await audit.record(
        tx, context, verb, target_type="flag", target_id=feature.name,
        details={"before": before.definition if before else None, "after": after},
    )  # fmt: skip
    log.info("flag_saved", flag=feature.name, action=verb)
    return feature, before is None


async def set_enabled(tx: Tx, context: AuditContext, name: str, *, enabled: bool) -> Feature:
    """The kill switch: turn a flag off (or back on) everywhere; audited before/after."""
    row = await repository.get_flag(tx, name, lock=True)
    if row is None:
        raise errors.NotFound("No such flag.")
    feature = Feature.model_validate({**row.definition, "enabled": enabled})
    saved, _ = await save_flag(
        tx, context, feature, action="flag.enabled" if enabled else "flag.killed"
    )
    return saved


async def delete_flag(tx: Tx, context: AuditContext, name: str) -> None:
    """Delete a flag (and its release plan); audited."""
    before = await repository.delete_flag(tx, name)
    if before is None:
        raise errors.NotFound("No such flag.")
    await repository.bump_version(tx)
    await audit.record(
        tx, context, "flag.deleted", target_type="flag", target_id=name,
        details={"before": before.definition, "after": None},
    )  # fmt: skip


async def import_document(tx: Tx, context: AuditContext, document: FlagsDocument) -> int:
    """Upsert every segment and flag of an Unleash client-features document."""
    existing = {row.id: row.definition for row in await repository.list_segments(tx)}
    segments = [(s.id, s.model_dump(mode="json", exclude_none=True)) for s in document.segments]
    if segments:
        await repository.upsert_segments(tx, segments)
        for segment_id, after in segments:
            await audit.record(
                tx, context, "flag.segment_imported", target_type="flag_segment",
                target_id=str(segment_id),
                details={"before": existing.get(segment_id), "after": after},
            )  # fmt: skip
    for feature in document.features:
        await save_flag(tx, context, feature, action="flag.imported")
    if not document.features and segments:
        await repository.bump_version(tx)
    return len(document.features) + len(segments)


async def export_document(tx: Tx) -> FlagsDocument:
    """Every flag and segment as an Unleash client-features document."""
    flags = await repository.list_flags(tx)
    segments = await repository.list_segments(tx)
    return FlagsDocument(
        version=2,
        features=[Feature.model_validate(row.definition) for row in flags],
        segments=[Segment.model_validate(row.definition) for row in segments],
    )


def evaluate(snapshot: Snapshot, flag: str, context: FlagContext) -> Evaluation:
    """One flag for one context (unknown flags are off, never an error)."""
    variant = snapshot.variant(flag, context)
    return Evaluation(
        enabled=snapshot.is_enabled(flag, context),
        variant=VariantRead(
            name=variant.name,
            enabled=variant.enabled,
            payload=variant.payload,
            feature_enabled=variant.feature_enabled,
        ),
    )


def evaluate_all(snapshot: Snapshot, context: FlagContext) -> dict[str, Evaluation]:
    """Every flag for one context (the client's view; not counted as guarded outcomes)."""
    return {name: evaluate(snapshot, name, context) for name in snapshot.names}


def with_rollout(feature: dict[str, Any], rollout: int) -> dict[str, Any]:
    """The flag with its first ``flexibleRollout`` set to *rollout* % (added when missing)."""
    updated = dict(feature)
    strategies = [dict(s) for s in updated.get("strategies", [])]
    for strategy in strategies:
        if strategy.get("name") == "flexibleRollout":
            strategy["parameters"] = {**strategy.get("parameters", {}), "rollout": str(rollout)}
            break
    else:
        strategies.append(
            {
                "name": "flexibleRollout",
                "parameters": {
                    "rollout": str(rollout),
                    "stickiness": "default",
                    "groupId": updated["name"],
                },
                "constraints": [],
                "segments": [],
                "variants": [],
            }
        )
    updated["strategies"] = strategies
    updated["enabled"] = True
    return updated


def rollout_of(feature: dict[str, Any]) -> int:
    """The first ``flexibleRollout``'s percentage (0 when none)."""
    for strategy in feature.get("strategies", []):
        if strategy.get("name") == "flexibleRollout":
            try:
                return int(float(strategy.get("parameters", {}).get("rollout", 0)))
            except ValueError:
                return 0
    return 0


async def set_rollout(
    tx: Tx, context: AuditContext, name: str, rollout: int, *, action: str,
    details: dict[str, Any] | None = None,
) -> None:  # fmt: skip
    """Set a flag's rollout in the caller's transaction; audited as *action*."""
    row = await repository.get_flag(tx, name, lock=True)
    if row is None:
        raise errors.NotFound("No such flag.")
    after = with_rollout(row.definition, rollout)
    await repository.upsert_flag(tx, name, after)
    await repository.bump_version(tx)
    await audit.record(
        tx, context, action, target_type="flag", target_id=name,
        details={**(details or {}), "before": row.definition, "after": after},
    )  # fmt: skip
