"""Reading an ASGI scope, sans-I/O: what the application's entry points take from it.

Owns turning a scope's raw headers and query string into the lower-cased header map and
the query dict that ``SocketApp.handle_connect`` and the docs routes read (repeated
headers joined with ", ", as the shard's request-head reader does), and the path a route
sees once the scope's ``root_path`` (an app mounted under a prefix) is taken off. Does
not own routing to namespaces (``server.http.namespace_at``) or any I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl


def header_map(raw: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for name, value in raw:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    return headers


def query_params(query_string: bytes) -> dict[str, str]:
    return dict(parse_qsl(query_string.decode("latin-1"), keep_blank_values=True))


def route_path(scope: Mapping[str, Any]) -> str:
    """``scope["path"]`` without the ``root_path`` an enclosing mount or server put before it
    (the ASGI spec has ``path`` include it)."""
    path: str = scope.get("path") or "/"
    root: str = scope.get("root_path") or ""
    if root and path.startswith(root):
        path = path[len(root) :] or "/"
    return path
