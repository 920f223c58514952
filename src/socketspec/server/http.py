"""The HTTP side of the listener, sans-I/O: request heads in, routing decisions and
response bytes out.

Owns parsing a request head with h11 (bounded at ``MAX_HEADER_BYTES``: 431 past
it, 400 for a malformed head), telling a WebSocket upgrade from a plain
request, splitting path and query, and encoding the small plain responses the
server gives (health, 403, 404). Does not own sockets or the WebSocket
handshake itself (wsproto performs it).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit

import h11
import orjson

MAX_HEADER_BYTES = 16 * 1024

REASONS = {
    200: b"OK",
    304: b"Not Modified",
    400: b"Bad Request",
    401: b"Unauthorized",
    403: b"Forbidden",
    404: b"Not Found",
    405: b"Method Not Allowed",
    411: b"Length Required",
    413: b"Content Too Large",
    422: b"Unprocessable Content",
    426: b"Upgrade Required",
    429: b"Too Many Requests",
    431: b"Request Header Fields Too Large",
    500: b"Internal Server Error",
    503: b"Service Unavailable",
}


@dataclass(frozen=True, slots=True)
class RequestHead:
    method: str
    target: str  # as sent, path and query
    path: str
    query: dict[str, str]
    headers: list[tuple[bytes, bytes]]  # as received (lower-cased names), for wsproto
    header_map: dict[str, str]  # lower-cased names; repeated headers joined with ", "
    trailing: bytes  # bytes after the head (early frames of a pipelining client)

    @property
    def is_websocket_upgrade(self) -> bool:
        upgrade = self.header_map.get("upgrade", "").lower()
        connection = self.header_map.get("connection", "").lower()
        return "websocket" in upgrade and "upgrade" in connection


@dataclass(frozen=True, slots=True)
class HeadError:
    status: int
    reason: str


class RequestHeadReader:
    """Feed bytes until a complete request head or an error comes out."""

    __slots__ = ("_fed", "_h11")

    def __init__(self) -> None:
        self._h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEADER_BYTES)
        self._fed = 0

    def feed(self, data: bytes) -> RequestHead | HeadError | None:
        """None: need more bytes."""
        conn = self._h11
        self._fed += len(data)
        conn.receive_data(data)
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError as exc:
            return HeadError(exc.error_status_hint, str(exc) or "malformed request")
        if event is h11.NEED_DATA:
            return None
        if not isinstance(event, h11.Request):
            return HeadError(400, "malformed request")
        target = event.target.decode("latin-1")
        parts = urlsplit(target)
        header_map: dict[str, str] = {}
        for name, value in event.headers:
            key = name.decode("latin-1").lower()
            text = value.decode("latin-1")
            header_map[key] = f"{header_map[key]}, {text}" if key in header_map else text
        trailing, _closed = conn.trailing_data
        # h11 bounds a head only while it is incomplete; one that arrived whole is measured here.
        if self._fed - len(trailing) > MAX_HEADER_BYTES:
            return HeadError(431, "request header fields too large")
        return RequestHead(
            method=event.method.decode("latin-1"),
            target=target,
            path=parts.path or "/",
            query=dict(parse_qsl(parts.query, keep_blank_values=True)),
            headers=list(event.headers),
            header_map=header_map,
            trailing=bytes(trailing),
        )


@dataclass(frozen=True, slots=True)
class Reply:
    """A plain response before it is framed: the shard encodes it as HTTP/1.1 bytes, an ASGI
    server is handed its parts."""

    status: int
    body: bytes
    content_type: bytes = b"text/plain; charset=utf-8"
    extra: tuple[tuple[bytes, bytes], ...] = ()

    def encode(self) -> bytes:
        return response(self.status, self.body, self.content_type, list(self.extra))


def text_reply(status: int, reason: str) -> Reply:
    return Reply(status, reason.encode() + b"\n")


def namespace_at(base: str, path: str) -> str | None:
    """The namespace a WebSocket path names under the endpoint ``base``: ``<base>`` is "/",
    ``<base>/x`` is "/x"; None outside ``base``."""
    base = base.rstrip("/") or "/"
    if path == base or path == base + "/":
        return "/"
    if path.startswith(base + "/") if base != "/" else path.startswith("/"):
        return "/" + path[len(base) :].strip("/")
    return None


def response(
    status: int,
    body: bytes,
    content_type: bytes = b"text/plain; charset=utf-8",
    extra: list[tuple[bytes, bytes]] | None = None,
) -> bytes:
    """A complete HTTP/1.1 response that closes the connection."""
    lines = [
        b"HTTP/1.1 %d %s" % (status, REASONS.get(status, b"Unknown")),
        b"content-type: " + content_type,
    ]
    if status != 304:  # a 304's content-length would have to be the 200's (RFC 9110 8.6)
        lines.append(b"content-length: %d" % len(body))
    lines.append(b"connection: close")
    lines.extend(name + b": " + value for name, value in extra or ())
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def text_response(status: int, reason: str) -> bytes:
    """A one-line plain-text response (403, 404, 400, ...)."""
    return response(status, reason.encode() + b"\n")


def json_response(status: int, document: object) -> bytes:
    return response(status, orjson.dumps(document), b"application/json")
