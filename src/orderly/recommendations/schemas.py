"""Recommendations as the API shows them."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from orderly.catalog.schemas import ProductRead

Source = Literal["model", "co_purchase", "popular"]


class RecommendationsRead(BaseModel):
    """Products to show, and which source answered the first one."""

    items: list[ProductRead]
    source: Source
