"""A bare FastAPI app answering ``GET /v1/products/{id}`` with fixed JSON bytes.

The baseline of PRODUCT.md §9: the same route shape and the same bytes as
orderly's product read, served by uvicorn with the settings ``orderly api``
uses, but with no middleware, database, cache or auth.

Run: ``python -m benchmarks.bare_app --port 8123 --body-file product.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import uuid
from pathlib import Path

import uvicorn
from fastapi import FastAPI
from fastapi.responses import Response


def build_app(body: bytes, media_type: str = "application/json") -> FastAPI:
    """The bare app: one route, the id parsed like orderly parses it, the body pre-encoded."""
    app = FastAPI()

    @app.get("/v1/products/{product_id}")
    async def read_product(product_id: uuid.UUID) -> Response:
        return Response(body, media_type=media_type)

    @app.get("/livez")
    async def livez() -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")

    return app


def main() -> None:
    """Serve until SIGTERM."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--body-file", type=Path, required=True)
    parser.add_argument("--media-type", default="application/json")
    args = parser.parse_args()
    app = build_app(args.body_file.read_bytes(), args.media_type)
    # The same uvicorn settings as orderly.cli._serve (one process, auto loop/http).
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        lifespan="on",
        log_config=None,
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=30,
        timeout_keep_alive=5,
    )
    asyncio.run(uvicorn.Server(config).serve())


if __name__ == "__main__":
    main()
