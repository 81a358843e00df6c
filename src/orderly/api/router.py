"""The /v1 router: one include line per domain."""

from __future__ import annotations

from fastapi import APIRouter

api_router = APIRouter(prefix="/v1")
