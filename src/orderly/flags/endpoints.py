"""Flag routes: the caller's flags, admin CRUD, import/export, evaluate, release plans."""

from __future__ import annotations

from fastapi import Request
from starlette.responses import Response

from orderly import errors
from orderly.api.auth import AdminUser, CurrentUser, Origin
from orderly.api.deps import AppSettings, Page, Transaction, encode_cursor
from orderly.api.idempotency import IDEMPOTENT
from orderly.api.problems import responses_for
from orderly.api.routing import domain_router
from orderly.flags import client, release, service
from orderly.flags.engine import FlagContext
from orderly.flags.schemas import (
    EvaluateRequest,
    Evaluation,
    Feature,
    FlagName,
    FlagPage,
    FlagsDocument,
    ImportResult,
    MyFlags,
    ReleasePlan,
    ReleaseRead,
)

router = domain_router(tags=["flags"])
_ADMIN_ERRORS = responses_for(errors.Unauthorized, errors.Forbidden)
_REPLAY_ERRORS = responses_for(errors.IdempotencyKeyReused, errors.IdempotencyKeyInUse)


@router.get("/flags", responses=responses_for(errors.Unauthorized))
async def my_flags(request: Request, user: CurrentUser, settings: AppSettings) -> MyFlags:
    """Every flag evaluated for the caller (userId, role, remoteAddress, environment)."""
    context = FlagContext.of(
        user_id=user.id,
        remote_address=request.client.host if request.client else None,
        environment=settings.env,
        properties={"role": user.role.value},
    )
    return MyFlags(flags=service.evaluate_all(client.snapshot(), context))


@router.get("/admin/flags/export", responses=_ADMIN_ERRORS)
async def export_flags(tx: Transaction, user: AdminUser) -> FlagsDocument:
    """Every flag and segment as an Unleash client-features document."""
    return await service.export_document(tx)


@router.post(
    "/admin/flags/import",
    dependencies=[IDEMPOTENT],
    responses={**_ADMIN_ERRORS, **_REPLAY_ERRORS},
)
async def import_flags(
    document: FlagsDocument, tx: Transaction, user: AdminUser, origin: Origin
) -> ImportResult:
    """Upsert every flag and segment of an Unleash document."""
    count = await service.import_document(tx, origin.with_actor(user.id, user.role), document)
    return ImportResult(imported=count)


@router.post("/admin/flags/evaluate", responses=_ADMIN_ERRORS)
async def evaluate_flag(data: EvaluateRequest, user: AdminUser) -> Evaluation:
    """Evaluate one flag for a given context (an unknown flag is off)."""
    context = FlagContext.from_unleash(data.context.model_dump(mode="json", exclude_none=True))
    return service.evaluate(client.snapshot(), data.flag, context)


@router.get("/admin/flags", responses=_ADMIN_ERRORS)
async def list_flags(tx: Transaction, user: AdminUser, page: Page) -> FlagPage:
    """Flags by name."""
    after = page.cursor.get("n") if page.cursor else None
    flags = await service.list_flags(tx, after=after, limit=page.limit + 1)
    more = len(flags) > page.limit
    flags = flags[: page.limit]
    return FlagPage(data=flags, next_cursor=encode_cursor({"n": flags[-1].name}) if more else None)


@router.get("/admin/flags/{name}", responses=responses_for(errors.NotFound, errors.Forbidden))
async def read_flag(name: FlagName, tx: Transaction, user: AdminUser) -> Feature:
    """One flag in Unleash's shape."""
    return await service.get_flag(tx, name)


@router.put(
    "/admin/flags/{name}",
    response_model=Feature,
    responses={201: {"model": Feature, "description": "Created"}, **_ADMIN_ERRORS,
               **responses_for(errors.InvalidInput)},
)  # fmt: skip
async def put_flag(
    name: FlagName, feature: Feature, tx: Transaction, user: AdminUser, origin: Origin
) -> Response:
    """Create (201) or replace (200) a flag; the body's name must match the path."""
    if feature.name != name:
        raise errors.InvalidInput("name must match the path", field="name")
    saved, created = await service.save_flag(tx, origin.with_actor(user.id, user.role), feature)
    return Response(
        saved.model_dump_json(exclude_none=True),
        status_code=201 if created else 200,
        media_type="application/json",
    )


@router.delete(
    "/admin/flags/{name}",
    status_code=204,
    responses=responses_for(errors.NotFound, errors.Forbidden),
)
async def delete_flag(name: FlagName, tx: Transaction, user: AdminUser, origin: Origin) -> Response:
    """Delete a flag (it evaluates as unknown: off)."""
    await service.delete_flag(tx, origin.with_actor(user.id, user.role), name)
    return Response(status_code=204)


@router.put(
    "/admin/flags/{name}/release", responses=responses_for(errors.NotFound, errors.Forbidden)
)
async def put_release(
    name: FlagName, plan: ReleasePlan, tx: Transaction, user: AdminUser, origin: Origin
) -> ReleaseRead:
    """Start a release plan at its first stage; the worker moves it on."""
    return await release.start(tx, origin.with_actor(user.id, user.role), name, plan)


@router.get(
    "/admin/flags/{name}/release", responses=responses_for(errors.NotFound, errors.Forbidden)
)
async def read_release(name: FlagName, tx: Transaction, user: AdminUser) -> ReleaseRead:
    """A release plan's progress."""
    return await release.get(tx, name)


_TRANSITION_ERRORS = {
    **responses_for(errors.NotFound, errors.Conflict, errors.Forbidden),
    **_REPLAY_ERRORS,
}


@router.post(
    "/admin/flags/{name}/release/pause", dependencies=[IDEMPOTENT], responses=_TRANSITION_ERRORS
)
async def pause_release(
    name: FlagName, tx: Transaction, user: AdminUser, origin: Origin
) -> ReleaseRead:
    """Hold the plan at its current stage."""
    return await release.pause(tx, origin.with_actor(user.id, user.role), name)


@router.post(
    "/admin/flags/{name}/release/resume", dependencies=[IDEMPOTENT], responses=_TRANSITION_ERRORS
)
async def resume_release(
    name: FlagName, tx: Transaction, user: AdminUser, origin: Origin
) -> ReleaseRead:
    """Continue a paused plan."""
    return await release.resume(tx, origin.with_actor(user.id, user.role), name)


@router.post(
    "/admin/flags/{name}/release/rollback", dependencies=[IDEMPOTENT], responses=_TRANSITION_ERRORS
)
async def rollback_release(
    name: FlagName, tx: Transaction, user: AdminUser, origin: Origin
) -> ReleaseRead:
    """Roll back now: rollout 0."""
    return await release.rollback(tx, origin.with_actor(user.id, user.role), name)
