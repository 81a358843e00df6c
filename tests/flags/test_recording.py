"""ORDERLY_RECORD_REQUEST_OUTCOMES decides whether a process feeds the guard and the SLOs.

On (the default), an API process flushes flag outcomes (a request's own and a
code path's reported one) and per-minute request counts to PostgreSQL; off, it
flushes neither, so the guard and ``/v1/admin/slos`` see none of its traffic.
The app runs for real (its lifespan, the model as a local HTTP server) and the
figures are read back the way the guard and the SLO report read them.
"""

from __future__ import annotations

import asyncpg
import httpx
import pytest
from asgi_lifespan import LifespanManager

from orderly.accounts.schemas import Role
from orderly.config import Settings, load_settings
from orderly.core.db import Database
from orderly.flags import client as flags
from orderly.flags import repository as flag_repository
from orderly.incidents import slo
from orderly.main import create_app
from orderly.recommendations.routing import MODEL_FLAG
from tests.support.accounts import CHEAP_HASHING, signed_in
from tests.support.receivers import HttpReceiver, eventually

FLUSH = 0.2


@pytest.mark.parametrize("record", [True, False], ids=["recording", "not-recording"])
async def test_the_setting_decides_whether_outcomes_and_request_counts_are_flushed(
    record: bool,
    settings: Settings,
    database: Database,
    database_url: str,
    raw_db: asyncpg.Connection,
    model: HttpReceiver,
) -> None:
    settings = settings.model_copy(
        update={
            **CHEAP_HASHING,
            "recommender_url": model.url,
            "telemetry_flush_seconds": FLUSH,
            "record_request_outcomes": record,
        }
    )
    app = create_app(settings, database_url=database_url)
    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            admin = await signed_in(client, database, settings, Role.admin)
            on_user = await signed_in(client, database, settings, Role.customer)
            off_user = await signed_in(client, database, settings, Role.customer)
            # On for one user only: that user's request calls the model (which fails) and
            # reports the call; the other's request counts for the off-cohort by itself.
            flag = {
                "name": MODEL_FLAG,
                "enabled": True,
                "strategies": [{"name": "userWithId", "parameters": {"userIds": str(on_user.id)}}],
            }
            created = await client.put(
                f"/v1/admin/flags/{MODEL_FLAG}", json=flag, headers=admin.headers
            )
            assert created.status_code == 201, created.text

            async def seen() -> bool:
                return flags.is_enabled(MODEL_FLAG, flags.context(user_id=on_user.id))

            await eventually(seen, timeout=2)
            for user in (on_user, off_user):
                answer = await client.get("/v1/users/me/recommendations", headers=user.headers)
                assert answer.status_code == 200, answer.text  # the fallback answered
            assert len(model.requests) == 1
            v1_requests = 6  # three logins, the flag, two recommendation requests
            if record:

                async def flushed() -> bool:  # the periodic flush, while the process runs
                    count = await raw_db.fetchval("SELECT count(*) FROM slo_request_minute")
                    return bool(count)

                await eventually(flushed, timeout=5)
            else:
                assert flags.recorder() is None
    # The lifespan has ended: its last flush has run too.
    async with database.transaction() as tx:
        guard_sees = await flag_repository.window_counts(tx, MODEL_FLAG, 300)
        availability, order_latency = (await slo.report(tx)).slos
    latency_counted = await raw_db.fetchval(
        "SELECT COALESCE(sum(count), 0)::bigint FROM slo_latency_minute"
    )
    seen_by_guard = {c: (n.ok, n.failed) for c, n in guard_sees.items()}
    if record:
        assert seen_by_guard == {"on": (0, 1), "off": (1, 0)}
        assert (availability.total, availability.good) == (v1_requests, v1_requests)
        assert latency_counted == v1_requests
    else:
        assert seen_by_guard == {"on": (0, 0), "off": (0, 0)}
        assert availability.total == 0
        assert latency_counted == 0
        assert await raw_db.fetchval("SELECT count(*) FROM flag_outcome") == 0
    assert order_latency.total == 0  # no orders were placed


def test_recording_is_on_unless_the_environment_turns_it_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert load_settings().record_request_outcomes is True
    monkeypatch.setenv("ORDERLY_RECORD_REQUEST_OUTCOMES", "false")
    assert load_settings().record_request_outcomes is False
