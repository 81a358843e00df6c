"""Release plans: the worker moves a flag's rollout through stages; the guard rolls it back.

Every step is one transaction: a conditional UPDATE of the plan row (status,
stage and due time in the WHERE clause) plus the flag change and its audit
event. A worker killed mid-step rolls the whole step back, and a second
worker (or the restarted one) can only apply a step whose condition still
holds, so no stage is skipped or applied twice.

The guard watches a plan while it runs or is paused, and for one guard window
after it completed: the last stage's errors only show in the outcomes after
the step that completed it, and an operator who sees "completed" expects the
guard to still catch a bad 100 % (``repository.guarded_releases``).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from prometheus_client import Counter

from orderly import errors
from orderly.audit.schemas import AuditContext
from orderly.core.db import Database, Tx
from orderly.core.telemetry import REGISTRY, get_logger
from orderly.flags import repository, service
from orderly.flags.repository import CohortCounts, ReleaseRow
from orderly.flags.schemas import Guard, ReleasePlan, ReleaseRead, ReleaseStatus, Stage
from orderly.incidents import service as incidents
from orderly.incidents.schemas import IncidentSource, Severity

log = get_logger(__name__)

RELEASE = AuditContext(actor_role="system:release")
GUARD = AuditContext(actor_role="system:guard")
Z_95 = 1.96

RELEASE_STEPS = Counter(
    "orderly_flag_release_steps_total", "Release plan steps, by kind.", ["kind"], registry=REGISTRY
)


def _event(event: str, actor: str, **fields: Any) -> dict[str, Any]:
    return {"at": datetime.now(UTC).isoformat(), "event": event, "actor": actor, **fields}


def _actor(context: AuditContext) -> str:
    return f"user:{context.actor_id}" if context.actor_id else (context.actor_role or "system")


async def _read(tx: Tx, row: ReleaseRow) -> ReleaseRead:
    flag = await repository.get_flag(tx, row.flag_name)
    return ReleaseRead(
        flag=row.flag_name,
        status=ReleaseStatus(row.status),
        stage=row.stage,
        rollout=service.rollout_of(flag.definition) if flag else 0,
        next_at=row.next_at,
        stages=[Stage.model_validate(s) for s in row.stages],
        guard=Guard.model_validate(row.guard) if row.guard else None,
        incident_id=str(row.incident_id) if row.incident_id else None,
        history=row.history,
    )


async def start(tx: Tx, context: AuditContext, name: str, plan: ReleasePlan) -> ReleaseRead:
    """Start (or restart) a plan at its first stage."""
    # Locked: a flag deleted meanwhile would break the plan's foreign key (500, not 404).
    if await repository.get_flag(tx, name, lock=True) is None:
        raise errors.NotFound("No such flag.")
    first = plan.stages[0]
    last = len(plan.stages) == 1
    row = await repository.put_release(
        tx,
        name,
        stages=[s.model_dump() for s in plan.stages],
        guard=plan.guard.model_dump() if plan.guard else None,
        status="completed" if last else "running",
        next_at_seconds=None if last else first.hold_seconds,
        history=[_event("started", _actor(context), stage=0, rollout=first.rollout)],
    )
    await service.set_rollout(
        tx, context, name, first.rollout, action="flag.release_started",
        details={"plan": plan.model_dump(mode="json")},
    )  # fmt: skip
    return await _read(tx, row)


async def get(tx: Tx, name: str) -> ReleaseRead:
    """A flag's plan."""
    row = await repository.get_release(tx, name)
    if row is None:
        raise errors.NotFound("This flag has no release plan.")
    return await _read(tx, row)


async def pause(tx: Tx, context: AuditContext, name: str) -> ReleaseRead:
    """Hold the plan at its stage (the remaining hold time is kept)."""
    row = await repository.transition_release(
        tx, name, from_statuses=("running",), status="paused", keep_remaining=True,
        event=_event("paused", _actor(context)),
    )  # fmt: skip
    return await _after_manual(tx, context, name, row, "flag.release_paused")


async def resume(tx: Tx, context: AuditContext, name: str) -> ReleaseRead:
    """Continue a paused plan with the hold time it had left."""
    row = await repository.transition_release(
        tx, name, from_statuses=("paused",), status="running", resume=True,
        event=_event("resumed", _actor(context)),
    )  # fmt: skip
    return await _after_manual(tx, context, name, row, "flag.release_resumed")


async def rollback(tx: Tx, context: AuditContext, name: str) -> ReleaseRead:
    """Roll back by hand: rollout 0, plan ``rolled_back``."""
    row = await repository.transition_release(
        tx, name, from_statuses=("running", "paused", "completed"), status="rolled_back",
        event=_event("rolled_back", _actor(context), rollout=0),
    )  # fmt: skip
    if row is None:
        return await _after_manual(tx, context, name, None, "flag.rolled_back")
    await service.set_rollout(tx, context, name, 0, action="flag.rolled_back")
    return await _read(tx, row)


async def _after_manual(
    tx: Tx, context: AuditContext, name: str, row: ReleaseRow | None, action: str
) -> ReleaseRead:
    if row is None:
        current = await repository.get_release(tx, name)
        if current is None:
            raise errors.NotFound("This flag has no release plan.")
        raise errors.Conflict(f"The release plan is {current.status}.")
    from orderly.audit import service as audit

    await audit.record(tx, context, action, target_type="flag", target_id=name)
    return await _read(tx, row)


# ---------------------------------------------------------------- the worker's side


async def advance_due(database: Database) -> int:
    """Move every plan whose hold time is over to its next stage; the steps applied."""
    async with database.transaction() as tx:
        due = await repository.due_releases(tx)
    applied = 0
    for plan in due:
        async with database.transaction() as tx:
            nxt = plan.stage + 1
            stages = plan.stages
            last = nxt >= len(stages) - 1
            if nxt >= len(stages):  # defensive: a plan past its last stage is complete
                row = await repository.transition_release(
                    tx, plan.flag_name, from_statuses=("running",), status="completed",
                    expect_stage=plan.stage, due_only=True,
                    event=_event("completed", "system:release", stage=plan.stage),
                )  # fmt: skip
            else:
                rollout = int(stages[nxt]["rollout"])
                row = await repository.transition_release(
                    tx, plan.flag_name, from_statuses=("running",),
                    status="completed" if last else "running", stage=nxt,
                    expect_stage=plan.stage, due_only=True,
                    next_at_seconds=None if last else float(stages[nxt].get("hold_seconds", 0)),
                    event=_event(
                        "completed" if last else "advanced", "system:release",
                        stage=nxt, rollout=rollout,
                    ),
                )  # fmt: skip
                if row is not None:
                    await service.set_rollout(
                        tx, RELEASE, plan.flag_name, rollout, action="flag.release_advanced",
                        details={"stage": nxt},
                    )  # fmt: skip
            if row is not None:
                await tx.commit()
                applied += 1
                RELEASE_STEPS.labels("completed" if row.status == "completed" else "advanced").inc()
                log.info(
                    "flag_release_step", flag=plan.flag_name, stage=row.stage, status=row.status
                )
    return applied


def wilson_lower(failures: int, total: int, z: float = Z_95) -> float:
    """Lower bound of the Wilson score interval for a failure rate (0 when no samples)."""
    if total <= 0:
        return 0.0
    p = failures / total
    denominator = 1 + z * z / total
    centre = p + z * z / (2 * total)
    margin = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total))
    return max(0.0, (centre - margin) / denominator)


def should_roll_back(guard: Guard, on: CohortCounts, off: CohortCounts) -> bool:
    """The contract's rule, made robust to small samples.

    The on-cohort needs ``min_samples`` outcomes in the window, and we must be
    95 % confident its error rate is above ``max_error_rate`` and above the
    off-cohort's observed rate: the Wilson lower bound must clear both (so
    1 error in 3 requests, or a noisy handful, never rolls back).
    """
    if on.total < guard.min_samples:
        return False
    lower = wilson_lower(on.failed, on.total)
    off_rate = off.failed / off.total if off.total else 0.0
    return lower > guard.max_error_rate and lower > off_rate


async def check_guards(database: Database) -> int:
    """Check every guarded plan once; the number rolled back."""
    async with database.transaction() as tx:
        plans = await repository.guarded_releases(tx)
    rolled = 0
    for plan in plans:
        assert plan.guard is not None
        guard = Guard.model_validate(plan.guard)
        async with database.transaction() as tx:
            counts = await repository.window_counts(tx, plan.flag_name, guard.window_seconds)
            on, off = counts["on"], counts["off"]
            if not should_roll_back(guard, on, off):
                continue
            figures = {
                "on": {"ok": on.ok, "failed": on.failed, "error_rate": on.failed / on.total},
                "off": {"ok": off.ok, "failed": off.failed},
                "wilson_lower": round(wilson_lower(on.failed, on.total), 4),
                "max_error_rate": guard.max_error_rate,
                "min_samples": guard.min_samples,
                "window_seconds": guard.window_seconds,
            }
            row = await repository.transition_release(
                tx, plan.flag_name, from_statuses=(plan.status,), status="rolled_back",
                expect_stage=plan.stage,
                event=_event("rolled_back", "system:guard", rollout=0, figures=figures),
            )  # fmt: skip
            if row is None:  # another worker won; nothing to do
                continue
            await service.set_rollout(
                tx, GUARD, plan.flag_name, 0, action="flag.rolled_back", details=figures
            )
            incident, _ = await incidents.open_incident(
                tx, GUARD, title=f"Flag {plan.flag_name} rolled back by its guard",
                severity=Severity.SEV2, source=IncidentSource.guard,
                summary=f"The on-cohort of {plan.flag_name} failed {on.failed} of {on.total}"
                f" outcomes in {guard.window_seconds}s (limit {guard.max_error_rate:.2%}).",
                details=figures,
            )  # fmt: skip
            await incidents.add_system_entry(
                tx, incident.id, "flag_rolled_back",
                f"Guard rolled {plan.flag_name} back to 0 %: on {on.failed}/{on.total} failed,"
                f" off {off.failed}/{off.total} failed.",
                "system:guard", figures,
            )  # fmt: skip
            await repository.transition_release(
                tx, plan.flag_name, from_statuses=("rolled_back",), status="rolled_back",
                incident_id=incident.id,
                event=_event("incident_opened", "system:guard", incident_id=str(incident.id)),
            )  # fmt: skip
            await tx.commit()
            rolled += 1
            RELEASE_STEPS.labels("guard_rollback").inc()
            log.warning(
                "flag_guard_rolled_back",
                flag=plan.flag_name,
                on_failed=on.failed,
                on_total=on.total,
            )
    return rolled
