"""An app for the docs page's browser tests: JWT auth, a docs access token, two namespaces,
pings every half second, an ordered and a deprecated event, and a payload model with every
kind of field the page's example generator has to fill in (enums, defaults, bounds, nested
models, lists, optionals)."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, Field

from socketspec import Broadcasts, Connection, Emits, Room, SocketApp
from socketspec.security.auth import JWTAuth
from socketspec.session import SessionConfig

# Shared with the tests (which import this module by path).
JWT_SECRET = "docs-page-integration-secret-0123456789"
DOCS_TOKEN = "docs-page-access-token"


class Priority(StrEnum):
    low = "low"
    high = "high"


class Location(BaseModel):
    city: str = Field(min_length=2, description="Where the sender is.")
    zip_code: str = Field(pattern=r"^[0-9]{5}$")


class Order(BaseModel):
    sku: str = Field(min_length=3, max_length=12, pattern=r"^[A-Z0-9-]+$")
    quantity: int = Field(ge=1, le=99, description="How many.")
    price: float = Field(gt=0)
    priority: Priority
    gift: bool = False
    note: str | None = None
    labels: list[str] = Field(min_length=1)
    ship_to: Location
    discount: int = Field(default=5, multiple_of=5)


class Accepted(BaseModel):
    sku: str
    total: float


class Join(BaseModel):
    room: str = Field(min_length=1, max_length=32, pattern=r"^[a-z0-9-]+$")


class Say(BaseModel):
    room: str = Field(min_length=1, max_length=32)
    text: str = Field(min_length=1, max_length=500)


class Said(BaseModel):
    room: str
    user: str
    text: str


class Ping(BaseModel):
    value: int = 1


app = SocketApp(
    docs=True,
    docs_access_token=DOCS_TOKEN,
    auth=JWTAuth(JWT_SECRET),
    rooms=[Room("room:{name}", max_members=10)],
    # Frequent pings, so that the tests see the page answer them.
    session=SessionConfig(heartbeat_interval=0.5),
)


@app.on(
    "join",
    tags=["rooms"],
    description="Join a room; the ack carries the member count.",
    emits=[Emits("joined", model=Join, description="Sent to the new member.")],
)
async def join(conn: Connection, payload: Join) -> dict[str, object]:
    await app.rooms.join(conn, f"room:{payload.room}")
    await conn.emit("joined", {"room": payload.room})
    members = await app.rooms.members(f"room:{payload.room}")
    return {"room": payload.room, "members": len(members)}


@app.on(
    "say",
    tags=["rooms"],
    description="Say something to a room you are in.",
    broadcasts=[Broadcasts("said", room="room:{room}", model=Said)],
    ordered=True,
)
async def say(conn: Connection, payload: Say) -> dict[str, int]:
    delivered = await app.rooms.broadcast(
        f"room:{payload.room}",
        "said",
        Said(room=payload.room, user=str(conn.identity.user_id), text=payload.text),
    )
    return {"delivered": delivered}


@app.on(
    "place_order",
    tags=["shop"],
    description="Place an order: a payload with enums, bounds, defaults and nested models.",
    emits=[Emits("order_accepted", model=Accepted)],
)
async def place_order(conn: Connection, payload: Order) -> Accepted:
    accepted = Accepted(sku=payload.sku, total=payload.price * payload.quantity)
    await conn.emit("order_accepted", accepted)
    return accepted


@app.on("old_ping", tags=["legacy"], description="Use ping instead.", deprecated=True)
async def old_ping(conn: Connection, payload: Ping) -> dict[str, int]:
    return {"pong": payload.value}


@app.on("ping", description="Answers with the value it was sent.")
async def ping(conn: Connection, payload: Ping) -> dict[str, int]:
    return {"pong": payload.value}


@app.on(
    "whoami",
    namespace="/admin",
    tags=["admin"],
    description="Who this connection is, on the admin namespace.",
)
async def whoami(conn: Connection, payload: Ping) -> dict[str, object]:
    return {"user": conn.identity.user_id, "namespace": conn.namespace}
