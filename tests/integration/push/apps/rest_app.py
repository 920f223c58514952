"""A separate FastAPI service whose REST routes push into the cluster with ``Emitter``.

Served by uvicorn on its own (``rest_app:api``), the way an application's REST API runs
beside its socket cluster: ``PUSH_URL`` is the cluster's Redis (``redis://...``) or the
cluster itself (``http://...``, with ``PUSH_API_KEY``). Each route answers the count the
emitter returned."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel

from socketspec import Emitter


class Shipped(BaseModel):
    order_id: int
    carrier: str = "post"


emitter = Emitter(os.environ["PUSH_URL"], api_key=os.environ.get("PUSH_API_KEY"), timeout=5.0)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    yield
    await emitter.close()


api = FastAPI(lifespan=lifespan)


@api.post("/rooms/{room}/headline")
async def headline(room: str, body: dict[str, Any]) -> dict[str, int]:
    return {"delivered": await emitter.broadcast(room, "headline", body)}


@api.post("/users/{user_id}/orders/{order_id}/ship")
async def ship(user_id: str, order_id: int) -> dict[str, int]:
    delivered = await emitter.emit_to_user(user_id, "shipped", Shipped(order_id=order_id))
    return {"delivered": delivered}


@api.post("/connections/{conn_id}/direct")
async def direct(conn_id: str, body: dict[str, Any]) -> dict[str, bool]:
    return {"sent": await emitter.emit_to(conn_id, "direct", body)}
