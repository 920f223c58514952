"""Serving the docs on the WebSocket port: the page, its assets, the two documents, and the
browser client.

Owns which paths belong to the docs (``<docs_url>``, ``<docs_url>/schema``,
``<docs_url>/static/<asset>``, ``/asyncapi.json``), the ``docs_access_token``
check (``Authorization: Bearer`` or ``?token=``, compared in constant time;
401 without it), and caching the documents (an app's registry does not change
once it has started). Also owns ``/socketspec.js``: the browser client the package
ships, public (with or without docs, no token: it is the same code for every app and
says nothing about this one), with an ETag naming the package version and the content, a
``cache-control`` lifetime, 304 for a matching ``If-None-Match``, and CORS open to any
origin (a module script from another origin needs it). Returns
``http.Reply`` values: the shard writes them as HTTP/1.1 bytes, the ASGI adapter hands
their parts to its server.
"""

from __future__ import annotations

import hashlib
import hmac
from functools import cache
from importlib import resources

import orjson

from socketspec.app import SocketApp
from socketspec.security.auth import bearer_token
from socketspec.server import http

ASYNCAPI_PATH = "/asyncapi.json"
CLIENT_PATH = "/socketspec.js"
# An hour: a browser revalidates (If-None-Match, 304) at most hourly, so a page picks up the
# client of an upgraded server within the hour without fetching 6 KB on every load.
CLIENT_MAX_AGE = 3600
_CONTENT_TYPES = {
    ".html": b"text/html; charset=utf-8",
    ".js": b"text/javascript; charset=utf-8",
    ".css": b"text/css; charset=utf-8",
    ".svg": b"image/svg+xml",
    ".json": b"application/json",
}
_NO_STORE = ((b"cache-control", b"no-store"),)


def _asset(name: str) -> bytes | None:
    if "/" in name or name.startswith("."):
        return None
    entry = resources.files("socketspec.apidocs").joinpath("static", name)
    return entry.read_bytes() if entry.is_file() else None


@cache
def _client_module() -> tuple[bytes, bytes]:
    """The shipped browser client and its ETag: the version of the package that ships it and
    the start of its SHA-256 (a rebuilt client gets a new ETag whatever the version)."""
    from socketspec import __version__

    body = resources.files("socketspec.apidocs").joinpath("static", "socketspec.js").read_bytes()
    digest = hashlib.sha256(body).hexdigest()[:16]
    return body, f'"{__version__}-{digest}"'.encode()


def client_reply(headers: dict[str, str]) -> http.Reply:
    """The answer to ``GET /socketspec.js`` (``headers`` lower-cased, as the shard and the
    ASGI adapter pass them)."""
    body, etag = _client_module()
    extra = (
        (b"cache-control", b"public, max-age=%d" % CLIENT_MAX_AGE),
        (b"etag", etag),
        # A page on another origin (the app's own site) may import it as a module, which
        # needs CORS; it is the same public code for everyone and is fetched without cookies.
        (b"access-control-allow-origin", b"*"),
    )
    # If-None-Match compares weakly: W/"x" matches "x".
    presented = {t.strip().removeprefix("W/") for t in headers.get("if-none-match", "").split(",")}
    if "*" in presented or etag.decode() in presented:
        return http.Reply(304, b"", _CONTENT_TYPES[".js"], extra=extra)
    return http.Reply(200, body, _CONTENT_TYPES[".js"], extra=extra)


@cache
def _documents(app_id: int, app: SocketApp, ws_path: str) -> tuple[bytes, bytes]:
    from socketspec.apidocs.asyncapi import asyncapi_document
    from socketspec.apidocs.schema import socketspec_schema

    return (
        orjson.dumps(socketspec_schema(app), option=orjson.OPT_INDENT_2),
        orjson.dumps(asyncapi_document(app, path=ws_path), option=orjson.OPT_INDENT_2),
    )


def is_docs_path(app: SocketApp, path: str) -> bool:
    base = app.docs_url.rstrip("/")
    return app.docs and (path in (base, base + "/", ASYNCAPI_PATH) or path.startswith(base + "/"))


def docs_reply(
    app: SocketApp,
    path: str,
    headers: dict[str, str],
    query: dict[str, str],
    *,
    ws_path: str = "/ws",
) -> http.Reply:
    """The answer to a docs path (``is_docs_path`` was true)."""
    token = app.docs_access_token
    if token is not None:
        presented = bearer_token(headers, query) or ""
        if not hmac.compare_digest(presented.encode(), token.encode()):
            return http.Reply(
                401,
                b"a docs access token is required (Authorization: Bearer or ?token=)\n",
                extra=((b"www-authenticate", b'Bearer realm="socket-docs"'),),
            )
    base = app.docs_url.rstrip("/")
    schema, asyncapi = _documents(id(app), app, ws_path)
    if path == ASYNCAPI_PATH:
        return http.Reply(200, asyncapi, b"application/json")
    if path == base + "/schema":
        return http.Reply(200, schema, b"application/json")
    if path in (base, base + "/"):
        page = _asset("index.html")
        if page is not None:
            # The page learns where the WebSocket endpoint and the assets are from the server.
            page = page.replace(b"__WS_PATH__", ws_path.encode()).replace(
                b"__DOCS_URL__", base.encode()
            )
            return http.Reply(200, page, _CONTENT_TYPES[".html"], extra=_NO_STORE)
    prefix = base + "/static/"
    if path.startswith(prefix):
        name = path[len(prefix) :]
        body = _asset(name)
        if body is not None:
            kind = _CONTENT_TYPES.get("." + name.rsplit(".", 1)[-1], b"application/octet-stream")
            return http.Reply(200, body, kind)
    return http.text_reply(404, f"not found: {path}")


def docs_response(
    app: SocketApp,
    path: str,
    headers: dict[str, str],
    query: dict[str, str],
    *,
    ws_path: str = "/ws",
) -> bytes:
    """``docs_reply`` as the HTTP/1.1 bytes the shard writes."""
    return docs_reply(app, path, headers, query, ws_path=ws_path).encode()
