"""Incidents over real HTTP: lifecycle, timeline, post-mortem, Alertmanager, SLOs."""

from __future__ import annotations

import httpx
import pytest
from pydantic import SecretStr

from orderly.accounts.schemas import Role
from orderly.config import Settings
from orderly.core.db import Database
from tests.support.accounts import signed_in


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"alertmanager_token": SecretStr("am-token-123")})


async def test_lifecycle_timeline_and_postmortem(
    client: httpx.AsyncClient, database: Database, settings: Settings
) -> None:
    staff = await signed_in(client, database, settings, Role.staff)
    customer = await signed_in(client, database, settings, Role.customer)
    body = {"title": "Checkout slow", "severity": "SEV2"}
    assert (
        await client.post("/v1/admin/incidents", json=body, headers=customer.headers)
    ).status_code == 403
    created = await client.post("/v1/admin/incidents", json=body, headers=staff.headers)
    assert created.status_code == 201, created.text
    incident = created.json()
    assert (incident["status"], incident["source"]) == ("active", "manual")
    url = f"/v1/admin/incidents/{incident['id']}"
    await client.post(url + "/timeline", json={"message": "rolled back"}, headers=staff.headers)
    stable = await client.patch(
        url, json={"status": "stable", "root_cause": "N+1"}, headers=staff.headers
    )
    assert stable.json()["stabilized_at"] is not None
    closed = await client.patch(url, json={"status": "closed"}, headers=staff.headers)
    assert closed.json()["closed_at"] is not None
    again = await client.patch(url, json={"status": "active"}, headers=staff.headers)
    assert again.status_code == 409
    kinds = [e["kind"] for e in closed.json()["timeline"]]
    assert kinds[:2] == ["opened", "note"]
    assert "status_changed" in kinds
    markdown = await client.get(url + "/postmortem", headers=staff.headers)
    assert markdown.headers["content-type"].startswith("text/markdown")
    for section in ("# Post-mortem", "## Summary", "## Impact", "## Timeline", "## Root cause",
                    "## Resolution", "## Action items", "## Lessons learned"):  # fmt: skip
        assert section in markdown.text


async def test_alertmanager_one_incident_per_fingerprint(
    client: httpx.AsyncClient, database: Database, settings: Settings
) -> None:
    staff = await signed_in(client, database, settings, Role.staff)
    alert = {"status": "firing", "labels": {"alertname": "OrderlyDown"}, "fingerprint": "abc"}
    payload = {"version": "4", "status": "firing", "alerts": [alert]}
    auth = {"Authorization": "Bearer am-token-123"}
    wrong = await client.post(
        "/v1/webhooks/alertmanager", json=payload, headers={"Authorization": "Bearer x"}
    )
    assert wrong.status_code == 401
    first = await client.post("/v1/webhooks/alertmanager", json=payload, headers=auth)
    second = await client.post("/v1/webhooks/alertmanager", json=payload, headers=auth)
    assert (first.json()["opened"], second.json()["opened"]) == (1, 0)
    resolved = {**payload, "alerts": [{**alert, "status": "resolved"}]}
    assert (await client.post("/v1/webhooks/alertmanager", json=resolved, headers=auth)).json()[
        "resolved"
    ] == 1
    listed = (await client.get("/v1/admin/incidents", headers=staff.headers)).json()["data"]
    assert len(listed) == 1
    assert listed[0]["timeline"][-1]["kind"] == "alert_resolved"


async def test_slos_count_v1_requests(
    client: httpx.AsyncClient, database: Database, settings: Settings, app: object
) -> None:
    from orderly.flags import client as flags_client

    staff = await signed_in(client, database, settings, Role.staff)
    for _ in range(3):
        await client.get("/v1/admin/incidents", headers=staff.headers)
    counter = flags_client.runtime()
    assert counter is not None
    report = (await client.get("/v1/admin/slos", headers=staff.headers)).json()
    names = [s["name"] for s in report["slos"]]
    assert names == ["availability", "order_latency"]


async def test_a_retried_open_with_the_same_key_opens_one_incident(
    client: httpx.AsyncClient, database: Database, settings: Settings
) -> None:
    staff = await signed_in(client, database, settings, Role.staff)
    headers = {**staff.headers, "Idempotency-Key": "incident-retry-1"}
    body = {"title": "Payments failing", "severity": "SEV1"}
    first = await client.post("/v1/admin/incidents", json=body, headers=headers)
    again = await client.post("/v1/admin/incidents", json=body, headers=headers)
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    other = await client.post(
        "/v1/admin/incidents", json={**body, "severity": "SEV2"}, headers=headers
    )
    assert other.status_code == 422  # same key, other body
    listed = (await client.get("/v1/admin/incidents", headers=staff.headers)).json()["data"]
    assert len(listed) == 1
