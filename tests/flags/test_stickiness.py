"""Stickiness: as a rollout grows 1 → 10 → 50 → 100 %, no user leaves the on-cohort."""

from __future__ import annotations

import uuid

from orderly.flags import service
from orderly.flags.engine import FlagContext, Snapshot

FLAG = {
    "name": "recommendations.model",
    "enabled": True,
    "strategies": [
        {
            "name": "flexibleRollout",
            "parameters": {
                "rollout": "0",
                "stickiness": "default",
                "groupId": "recommendations.model",
            },
        }
    ],
}
USERS = [FlagContext.of(user_id=uuid.UUID(int=n * 7919 + 1)) for n in range(10_000)]


def on_cohort(rollout: int) -> set[int]:
    """Indices of the users the flag is on for at *rollout* % (as the release worker sets it)."""
    snapshot = Snapshot([service.with_rollout(FLAG, rollout)], [], rollout)
    return {i for i, ctx in enumerate(USERS) if snapshot.is_enabled(FLAG["name"], ctx)}


def test_users_stay_on_as_the_rollout_grows() -> None:
    cohorts = {rollout: on_cohort(rollout) for rollout in (1, 10, 50, 100)}
    assert cohorts[1] <= cohorts[10] <= cohorts[50] <= cohorts[100]
    assert len(cohorts[100]) == len(USERS)
    for rollout in (1, 10, 50):
        share = 100 * len(cohorts[rollout]) / len(USERS)
        assert abs(share - rollout) <= 2, (rollout, share)
