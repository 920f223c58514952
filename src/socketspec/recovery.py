"""Connection-state recovery: the configuration, the token and the stored ack replies, sans-I/O.

Owns ``Recovery`` (the app's settings: the window, the secret, whether guards re-run,
the bounds), the recovery token (``TokenSigner``: a connection's identity, metadata and
room positions, signed with HMAC-SHA256, bounded in size, valid for the window; a token
it cannot honour is refused with one of three codes), ``AckCache`` (one connection's
replies to its acked messages, so a message resent after a recovery is answered, not run
twice) and ``ParkedSessions`` (the ack caches of this process's closed connections, kept
for the window). Does not own when tokens are sent or honoured (``app.py``), the room
history (``history.py``, the room stores), or anything on the wire besides the token.

The token is ``base64url(payload) + "." + base64url(hmac_sha256(secret, payload_b64))``
(no padding), the payload the JSON object ``{"v":1, "c": conn_id, "n": namespace,
"o": node, "u": identity, "m": metadata, "r": {room: "epoch:offset" | null},
"i": issued_at, "x": expires_at}`` (unix seconds). It is signed, not encrypted: the
client can read its own state, nobody can change it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from socketspec import envelope
from socketspec.errors import ConfigurationError, ErrorCode
from socketspec.types import AckId, ConnectionId, Namespace, RoomName

SECRET_ENV = "SOCKETSPEC_RECOVERY_SECRET"
# The history domain a token belongs to ("" in one process or with Redis, where any node
# may serve any room's history); the cluster's supervisor draws one per cluster start.
NODE_ENV = "SOCKETSPEC_RECOVERY_NODE"
TOKEN_VERSION = 1


@dataclass(frozen=True, slots=True)
class Recovery:
    """Connection-state recovery settings (``SocketApp(recovery=...)``; None disables it).

    Args:
        window: seconds a dropped connection can come back (the token's life, and how long
            its ack replies are kept).
        secret: the HMAC key of the tokens; else ``$SOCKETSPEC_RECOVERY_SECRET``, else the
            cluster's own (drawn at start), else one drawn per app instance.
        skip_guards: a recovered connection rejoins its rooms without their guards running
            again (False: each guard runs, a refused room is left out).
        max_token_bytes: a larger state gets no token (``"token": null``); a larger token
            presented is refused.
        max_acks: replies kept per connection for resent messages (oldest dropped).
        max_parked: closed connections whose replies are kept (oldest dropped).
    """

    window: float = 120.0
    secret: str | bytes | None = None
    skip_guards: bool = True
    max_token_bytes: int = 4096
    max_acks: int = 64
    max_parked: int = 10_000

    def __post_init__(self) -> None:
        if self.window <= 0:
            raise ConfigurationError("Recovery.window must be positive")
        if self.max_token_bytes < 256:
            raise ConfigurationError("Recovery.max_token_bytes must be at least 256")
        if self.max_acks < 0 or self.max_parked < 0:
            raise ConfigurationError("Recovery.max_acks and max_parked must not be negative")
        if self.secret is not None and not self.secret:
            raise ConfigurationError("Recovery.secret must not be empty")


def resolve_secret(explicit: str | bytes | None, environ: Mapping[str, str]) -> bytes:
    """The key to sign with: the explicit one, the environment's, or a fresh one (which
    only this process, and processes forked from it, will know)."""
    if explicit is not None:
        return explicit.encode() if isinstance(explicit, str) else explicit
    shared = environ.get(SECRET_ENV)
    if shared:
        return shared.encode()
    return secrets.token_bytes(32)


def draw_cluster_environment(environ: MutableMapping[str, str], *, redis: bool = False) -> None:
    """At a cluster's start, before its shards fork: one secret and one node id for every
    shard and every restart of a shard, unless the operator set them. With Redis the node
    id stays "" (every node serves every room's history; the nodes share one secret
    through Redis)."""
    if not environ.get(SECRET_ENV):
        environ[SECRET_ENV] = secrets.token_hex(32)
    if NODE_ENV not in environ and not redis:
        environ[NODE_ENV] = secrets.token_hex(6)


def node_from(environ: Mapping[str, str]) -> str:
    return environ.get(NODE_ENV, "")


# -- the token -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TokenIdentity:
    """Who the session belonged to (what authentication established, without secrets)."""

    user_id: str | None = None
    role: str | None = None
    scopes: tuple[str, ...] = ()
    authenticated: bool = False


@dataclass(frozen=True, slots=True)
class SessionState:
    """What a token says about a connection."""

    conn_id: ConnectionId
    namespace: Namespace
    node: str
    identity: TokenIdentity
    metadata: dict[str, Any] = field(default_factory=dict)
    rooms: dict[RoomName, str | None] = field(default_factory=dict)
    issued_at: float = 0.0
    expires_at: float = 0.0


@dataclass(frozen=True, slots=True)
class Refusal:
    """A token that is not honoured, and why (an ``__error__`` code and its message)."""

    code: ErrorCode
    message: str


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def jsonable(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of ``metadata`` a token can carry (JSON values); the rest stay behind."""
    kept: dict[str, Any] = {}
    for key, value in metadata.items():
        if not isinstance(key, str):
            continue
        try:
            orjson.dumps(value)
        except TypeError:
            continue
        kept[key] = value
    return kept


class TokenSigner:
    """Signs and verifies the recovery tokens of one process."""

    def __init__(
        self,
        secret: bytes,
        *,
        window: float,
        max_bytes: int,
        node: str = "",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._secret = secret
        self.window = window
        self.max_bytes = max_bytes
        self.node = node
        self._clock = clock

    def _mac(self, payload_b64: str) -> str:
        digest = hmac.new(self._secret, payload_b64.encode("ascii"), hashlib.sha256).digest()
        return _b64encode(digest)

    def sign(
        self,
        conn_id: ConnectionId,
        namespace: Namespace,
        identity: TokenIdentity,
        metadata: Mapping[str, Any],
        rooms: Mapping[RoomName, str | None],
    ) -> str | None:
        """A token valid for the window from now; None when it would pass ``max_bytes``."""
        now = self._clock()
        payload = {
            "v": TOKEN_VERSION,
            "c": conn_id,
            "n": namespace,
            "o": self.node,
            "u": {
                "user_id": identity.user_id,
                "role": identity.role,
                "scopes": list(identity.scopes),
                "authenticated": identity.authenticated,
            },
            "m": jsonable(metadata),
            "r": dict(rooms),
            "i": round(now, 3),
            "x": round(now + self.window, 3),
        }
        payload_b64 = _b64encode(orjson.dumps(payload))
        token = f"{payload_b64}.{self._mac(payload_b64)}"
        return token if len(token) <= self.max_bytes else None

    def verify(self, token: str, *, namespace: Namespace) -> SessionState | Refusal:
        """The state in ``token``, or why it is refused: ``RECOVERY_INVALID`` (too large,
        malformed, a signature that is not ours), ``RECOVERY_EXPIRED``, ``RECOVERY_FOREIGN``
        (another node's, or another namespace's)."""
        if len(token) > self.max_bytes:
            return Refusal(ErrorCode.RECOVERY_INVALID, "recovery token too large")
        payload_b64, sep, mac = token.partition(".")
        if not sep or not payload_b64 or not mac or not token.isascii():
            return Refusal(ErrorCode.RECOVERY_INVALID, "malformed recovery token")
        raw = _read_payload(payload_b64)
        if not hmac.compare_digest(mac.encode("ascii"), self._mac(payload_b64).encode("ascii")):
            # Another node signs with its own secret: say so when the (unverified) payload
            # names another node; both refuse, the code only tells the client why.
            if raw is not None and raw.get("o") != self.node:
                return Refusal(ErrorCode.RECOVERY_FOREIGN, "recovery token of another node")
            return Refusal(ErrorCode.RECOVERY_INVALID, "recovery token signature mismatch")
        state = _state_of(raw)
        if state is None:
            return Refusal(ErrorCode.RECOVERY_INVALID, "malformed recovery token")
        if state.node != self.node:
            return Refusal(ErrorCode.RECOVERY_FOREIGN, "recovery token of another node")
        if state.namespace != namespace:
            return Refusal(ErrorCode.RECOVERY_FOREIGN, "recovery token of another namespace")
        if self._clock() >= state.expires_at:
            return Refusal(ErrorCode.RECOVERY_EXPIRED, "recovery window has passed")
        return state


def _read_payload(payload_b64: str) -> dict[str, Any] | None:
    try:
        raw = orjson.loads(_b64decode(payload_b64))
    except (binascii.Error, ValueError):
        return None
    return raw if isinstance(raw, dict) else None


def _state_of(raw: dict[str, Any] | None) -> SessionState | None:
    """A signed payload read back; None when it is not a version-1 payload."""
    if raw is None or raw.get("v") != TOKEN_VERSION:
        return None
    conn_id, namespace, node = raw.get("c"), raw.get("n"), raw.get("o")
    user, metadata, rooms = raw.get("u"), raw.get("m"), raw.get("r")
    issued, expires = raw.get("i"), raw.get("x")
    if not (
        isinstance(conn_id, str)
        and conn_id
        and isinstance(namespace, str)
        and isinstance(node, str)
        and isinstance(user, dict)
        and isinstance(metadata, dict)
        and isinstance(rooms, dict)
        and isinstance(issued, int | float)
        and isinstance(expires, int | float)
    ):
        return None
    if not all(isinstance(pos, str | None) for pos in rooms.values()):
        return None
    scopes = user.get("scopes") or []
    user_id, role = user.get("user_id"), user.get("role")
    if not (
        isinstance(scopes, list)
        and all(isinstance(scope, str) for scope in scopes)
        and isinstance(user_id, str | None)
        and isinstance(role, str | None)
    ):
        return None
    identity = TokenIdentity(user_id, role, tuple(scopes), bool(user.get("authenticated")))
    return SessionState(
        conn_id, namespace, node, identity, metadata, rooms, float(issued), float(expires)
    )


# -- the replies to acked messages -----------------------------------------------------------------


class AckCache:
    """One connection's replies to its acked messages (ack id -> the ``__ack__`` or
    ``__error__`` frame), at most ``limit``, the oldest dropped first."""

    __slots__ = ("_replies", "limit")

    def __init__(self, limit: int, replies: Iterable[tuple[AckId, bytes]] = ()) -> None:
        self.limit = limit
        # Made at the first reply: most connections never keep one.
        self._replies: OrderedDict[AckId, bytes] | None = None
        for ack, frame in replies:
            self.put(ack, frame)

    def __len__(self) -> int:
        return len(self._replies) if self._replies is not None else 0

    def put(self, ack: AckId, frame: bytes) -> None:
        if self.limit <= 0:
            return
        replies = self._replies
        if replies is None:
            replies = self._replies = OrderedDict()
        replies[ack] = envelope.compact(frame)  # kept for minutes: its own bytes only
        replies.move_to_end(ack)
        while len(replies) > self.limit:
            replies.popitem(last=False)

    def get(self, ack: AckId) -> bytes | None:
        return self._replies.get(ack) if self._replies is not None else None

    def items(self) -> list[tuple[AckId, bytes]]:
        """Oldest first (the shape a store hands between shards)."""
        return list(self._replies.items()) if self._replies is not None else []


class ParkedSessions:
    """The ack caches of this process's closed connections, each kept for ``window``
    seconds, at most ``limit`` of them (the oldest dropped first)."""

    def __init__(
        self, window: float, limit: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.window = window
        self.limit = limit
        self._clock = clock
        self._parked: OrderedDict[ConnectionId, tuple[float, list[tuple[AckId, bytes]]]] = (
            OrderedDict()
        )

    def __len__(self) -> int:
        return len(self._parked)

    def __contains__(self, conn_id: object) -> bool:
        return conn_id in self._parked

    def park(self, conn_id: ConnectionId, replies: list[tuple[AckId, bytes]]) -> None:
        """Keep a closed connection's replies (nothing to keep: nothing parked)."""
        self.sweep()
        if not replies or self.limit <= 0:
            return
        parked = self._parked
        parked[conn_id] = (self._clock() + self.window, replies)
        parked.move_to_end(conn_id)
        while len(parked) > self.limit:
            parked.popitem(last=False)

    def take(self, conn_id: ConnectionId) -> list[tuple[AckId, bytes]] | None:
        """A recovering connection's replies, forgotten here; None when none are kept."""
        self.sweep()
        entry = self._parked.pop(conn_id, None)
        return None if entry is None else entry[1]

    def sweep(self) -> None:
        """Forget the sessions whose window has passed (oldest first: stop at a live one)."""
        now = self._clock()
        parked = self._parked
        while parked:
            conn_id, (until, _) = next(iter(parked.items()))
            if until > now:
                return
            del parked[conn_id]


def current_node() -> str:
    return node_from(os.environ)
