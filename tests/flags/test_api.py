"""Flags over real HTTP on real PostgreSQL: CRUD, audit, evaluation, release plans, guard."""

from __future__ import annotations

import asyncpg
import httpx

from orderly.accounts.schemas import Role
from orderly.config import Settings
from orderly.core.db import Database
from orderly.flags import client as flags
from orderly.flags import release
from tests.support.accounts import signed_in
from tests.support.receivers import eventually

FLAG = {
    "name": "recommendations.model",
    "enabled": True,
    "strategies": [
        {
            "name": "flexibleRollout",
            "parameters": {
                "rollout": "0",
                "stickiness": "userId",
                "groupId": "recommendations.model",
            },
        }
    ],
}


async def test_crud_audit_and_evaluation_reach_the_process(
    client: httpx.AsyncClient, database: Database, settings: Settings, raw_db: asyncpg.Connection
) -> None:
    admin = await signed_in(client, database, settings, Role.admin)
    customer = await signed_in(client, database, settings, Role.customer)
    assert (await client.get("/v1/admin/flags", headers=customer.headers)).status_code == 403
    created = await client.put(f"/v1/admin/flags/{FLAG['name']}", json=FLAG, headers=admin.headers)
    assert created.status_code == 201, created.text
    full = {**FLAG, "strategies": [{**FLAG["strategies"][0], "parameters": {
        **FLAG["strategies"][0]["parameters"], "rollout": "100"}}]}  # fmt: skip
    assert (
        await client.put(f"/v1/admin/flags/{FLAG['name']}", json=full, headers=admin.headers)
    ).status_code == 200

    async def seen() -> bool:
        return flags.is_enabled("recommendations.model", flags.context(user_id=customer.id))

    await eventually(seen, timeout=2)
    mine = await client.get("/v1/flags", headers=customer.headers)
    assert mine.json()["flags"]["recommendations.model"]["enabled"] is True
    evaluated = await client.post(
        "/v1/admin/flags/evaluate",
        json={"flag": "nope", "context": {"userId": "1"}},
        headers=admin.headers,
    )
    assert evaluated.json()["enabled"] is False
    exported = (await client.get("/v1/admin/flags/export", headers=admin.headers)).json()
    assert [f["name"] for f in exported["features"]] == ["recommendations.model"]
    actions = [
        r["action"] for r in await raw_db.fetch("SELECT action FROM audit_event ORDER BY seq")
    ]
    assert actions.count("flag.created") == 1
    assert actions.count("flag.updated") == 1
    imported = await client.post("/v1/admin/flags/import", json=exported, headers=admin.headers)
    assert imported.json() == {"imported": 1}
    assert (
        await client.delete(f"/v1/admin/flags/{FLAG['name']}", headers=admin.headers)
    ).status_code == 204


async def test_release_plan_runs_pauses_and_completes(
    client: httpx.AsyncClient, database: Database, settings: Settings
) -> None:
    admin = await signed_in(client, database, settings, Role.admin)
    await client.put(f"/v1/admin/flags/{FLAG['name']}", json=FLAG, headers=admin.headers)
    plan = {"stages": [{"rollout": 1, "hold_seconds": 0}, {"rollout": 10, "hold_seconds": 0},
                       {"rollout": 100}]}  # fmt: skip
    url = f"/v1/admin/flags/{FLAG['name']}/release"
    started = await client.put(url, json=plan, headers=admin.headers)
    assert started.json()["rollout"] == 1
    assert (await client.post(url + "/pause", headers=admin.headers)).json()["status"] == "paused"
    assert await release.advance_due(database) == 0  # paused holds it
    assert (await client.post(url + "/resume", headers=admin.headers)).json()["status"] == "running"
    assert await release.advance_due(database) == 1
    assert await release.advance_due(database) == 1
    assert await release.advance_due(database) == 0  # never repeats a stage
    body = (await client.get(url, headers=admin.headers)).json()
    assert (body["status"], body["stage"], body["rollout"]) == ("completed", 2, 100)


async def test_guard_rolls_back_once_with_one_incident(
    client: httpx.AsyncClient, database: Database, settings: Settings, raw_db: asyncpg.Connection
) -> None:
    admin = await signed_in(client, database, settings, Role.admin)
    await client.put(f"/v1/admin/flags/{FLAG['name']}", json=FLAG, headers=admin.headers)
    plan = {
        "stages": [{"rollout": 50, "hold_seconds": 3600}, {"rollout": 100}],
        "guard": {"max_error_rate": 0.05, "min_samples": 20, "window_seconds": 300},
    }
    url = f"/v1/admin/flags/{FLAG['name']}/release"
    await client.put(url, json=plan, headers=admin.headers)
    recorder = flags.recorder()
    assert recorder is not None
    for _ in range(2):  # 1 failure in 2: too few samples, no rollback
        recorder.record("recommendations.model", True, False)
    await recorder.flush()
    assert await release.check_guards(database) == 0
    for _ in range(30):
        recorder.record("recommendations.model", True, False)
        recorder.record("recommendations.model", False, True)
    await recorder.flush()
    assert await release.check_guards(database) == 1
    assert await release.check_guards(database) == 0
    body = (await client.get(url, headers=admin.headers)).json()
    assert (body["status"], body["rollout"]) == ("rolled_back", 0)
    assert await raw_db.fetchval("SELECT count(*) FROM incident WHERE source = 'guard'") == 1
    event = await raw_db.fetchrow(
        "SELECT actor_role FROM audit_event WHERE action = 'flag.rolled_back'"
    )
    assert event["actor_role"] == "system:guard"


def test_wilson_bound_keeps_tiny_samples_from_rolling_back() -> None:
    assert release.wilson_lower(2, 20) < 0.05  # 10 % observed, not yet confidently over 5 %
    assert release.wilson_lower(100, 100) > 0.9


async def test_a_retried_pause_replays_instead_of_conflicting(
    client: httpx.AsyncClient, database: Database, settings: Settings, raw_db: asyncpg.Connection
) -> None:
    admin = await signed_in(client, database, settings, Role.admin)
    await client.put(f"/v1/admin/flags/{FLAG['name']}", json=FLAG, headers=admin.headers)
    url = f"/v1/admin/flags/{FLAG['name']}/release"
    plan = {"stages": [{"rollout": 1, "hold_seconds": 600}, {"rollout": 100}]}
    await client.put(url, json=plan, headers=admin.headers)
    headers = {**admin.headers, "Idempotency-Key": "pause-1"}
    first = await client.post(url + "/pause", headers=headers)
    again = await client.post(url + "/pause", headers=headers)
    assert (first.status_code, again.status_code) == (200, 200)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert (await client.post(url + "/pause", headers=admin.headers)).status_code == 409
    paused = await raw_db.fetchval(
        "SELECT count(*) FROM audit_event WHERE action = 'flag.release_paused'"
    )
    assert paused == 1


async def test_a_completed_plan_stays_guarded_for_its_window(
    client: httpx.AsyncClient, database: Database, settings: Settings, raw_db: asyncpg.Connection
) -> None:
    admin = await signed_in(client, database, settings, Role.admin)
    await client.put(f"/v1/admin/flags/{FLAG['name']}", json=FLAG, headers=admin.headers)
    url = f"/v1/admin/flags/{FLAG['name']}/release"
    plan = {
        "stages": [{"rollout": 100}],
        "guard": {"max_error_rate": 0.05, "min_samples": 20, "window_seconds": 300},
    }
    assert (await client.put(url, json=plan, headers=admin.headers)).json()["status"] == (
        "completed"
    )
    recorder = flags.recorder()
    assert recorder is not None
    for _ in range(30):
        recorder.record("recommendations.model", True, False)
    await recorder.flush()
    # Older than its window, a completed plan is no longer watched …
    await raw_db.execute("UPDATE flag_release SET updated_at = now() - interval '301 seconds'")
    assert await release.check_guards(database) == 0
    # … but within it, errors right after reaching 100 % still roll it back.
    await raw_db.execute("UPDATE flag_release SET updated_at = now() - interval '299 seconds'")
    assert await release.check_guards(database) == 1
    body = (await client.get(url, headers=admin.headers)).json()
    assert (body["status"], body["rollout"]) == ("rolled_back", 0)
    assert body["incident_id"] is not None
