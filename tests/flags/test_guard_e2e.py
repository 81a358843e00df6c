"""The guard end to end: `recommendations.model` at 50 %, the model (a real local HTTP
receiver) answers 500; the worker's driver rolls the flag back by itself, opens one
incident with the figures, and no user request failed meanwhile (the fallback answered)."""

from __future__ import annotations

import asyncio
import contextlib
import time

import asyncpg
import httpx
import pytest

from orderly.accounts.schemas import Role
from orderly.config import Settings
from orderly.core.db import Database
from orderly.flags import client as flags
from orderly.flags import service as flags_service
from orderly.flags.tasks import drive
from orderly.recommendations.routing import MODEL_FLAG
from tests.flags.test_api import FLAG
from tests.support.accounts import CHEAP_HASHING, signed_in
from tests.support.receivers import HttpReceiver, eventually

MIN_SAMPLES = 20
GUARD_INTERVAL = 0.5
FLUSH = 0.2


@pytest.fixture
def settings(settings: Settings, model: HttpReceiver) -> Settings:
    return settings.model_copy(
        update={
            **CHEAP_HASHING,
            "recommender_url": model.url,
            "guard_interval_seconds": GUARD_INTERVAL,
            "telemetry_flush_seconds": FLUSH,
        }
    )


def rollout_seen() -> int:
    """The rollout this process evaluates ``recommendations.model`` with."""
    for feature in flags.snapshot().features:
        if feature["name"] == MODEL_FLAG:
            return flags_service.rollout_of(dict(feature))
    return -1


async def test_a_failing_model_rolls_its_flag_back_with_one_incident(
    client: httpx.AsyncClient,
    database: Database,
    settings: Settings,
    model: HttpReceiver,
    raw_db: asyncpg.Connection,
) -> None:
    admin = await signed_in(client, database, settings, Role.admin)
    customers = [await signed_in(client, database, settings, Role.customer) for _ in range(12)]
    assert (
        await client.put(f"/v1/admin/flags/{MODEL_FLAG}", json=FLAG, headers=admin.headers)
    ).status_code == 201
    plan = {
        "stages": [{"rollout": 50, "hold_seconds": 3600}, {"rollout": 100}],
        "guard": {"max_error_rate": 0.05, "min_samples": MIN_SAMPLES, "window_seconds": 300},
    }
    release_url = f"/v1/admin/flags/{MODEL_FLAG}/release"
    assert (await client.put(release_url, json=plan, headers=admin.headers)).status_code == 200

    async def at_50() -> bool:
        return rollout_seen() == 50

    await eventually(at_50, timeout=2)
    on = [
        c for c in customers if flags.snapshot().is_enabled(MODEL_FLAG, flags.context(user_id=c.id))
    ]
    assert 2 <= len(on) <= 10, len(on)  # 12 users at 50 %: both cohorts are populated

    driver = asyncio.create_task(drive(database, settings))
    try:
        statuses: list[int] = []
        on_calls = 0
        while on_calls < MIN_SAMPLES:
            for customer in customers:
                answer = await client.get("/v1/users/me/recommendations", headers=customer.headers)
                statuses.append(answer.status_code)
                on_calls += customer in on
        reached = time.monotonic()
        assert set(statuses) == {200}  # the fallback answered every request
        assert model.requests, "the on-cohort was sent to the model"

        async def rolled_back() -> bool:
            body = (await client.get(release_url, headers=admin.headers)).json()
            return bool(body["status"] == "rolled_back")

        await eventually(rolled_back, timeout=10)
        elapsed = time.monotonic() - reached
    finally:
        driver.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await driver
    # Outcomes reach PostgreSQL within one flush; the guard acts within three intervals.
    assert elapsed < FLUSH + 3 * GUARD_INTERVAL, elapsed

    body = (await client.get(release_url, headers=admin.headers)).json()
    assert (body["status"], body["rollout"]) == ("rolled_back", 0)
    incidents = await raw_db.fetch("SELECT id, source FROM incident")
    assert [row["source"] for row in incidents] == ["guard"]
    assert body["incident_id"] == str(incidents[0]["id"])
    incident = (
        await client.get(f"/v1/admin/incidents/{incidents[0]['id']}", headers=admin.headers)
    ).json()
    figures = next(e for e in incident["timeline"] if e["kind"] == "flag_rolled_back")["data"]
    assert figures["on"]["failed"] >= MIN_SAMPLES
    assert figures["off"]["failed"] == 0
    assert figures["off"]["ok"] > 0
    actor = await raw_db.fetchval(
        "SELECT actor_role FROM audit_event WHERE action = 'flag.rolled_back'"
    )
    assert actor == "system:guard"

    # Rolled back: nobody is sent to the model any more.
    async def at_0() -> bool:
        return rollout_seen() == 0

    await eventually(at_0, timeout=2)
    calls = len(model.requests)
    for customer in on:
        answer = await client.get("/v1/users/me/recommendations", headers=customer.headers)
        assert answer.status_code == 200
    assert len(model.requests) == calls
