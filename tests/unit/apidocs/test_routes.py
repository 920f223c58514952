"""``/socketspec.js``: the shipped browser client, public, with its cache headers, as the
shard encodes it and as the ASGI entry routes it."""

from __future__ import annotations

import hashlib
from importlib import resources

from socketspec import SocketApp, __version__
from socketspec.adapters.asgi import SocketASGI
from socketspec.apidocs.routes import CLIENT_PATH, client_reply, is_docs_path

SHIPPED = resources.files("socketspec.apidocs").joinpath("static", "socketspec.js").read_bytes()


def header(reply_extra: tuple[tuple[bytes, bytes], ...], name: bytes) -> bytes:
    return dict(reply_extra)[name]


def test_the_shipped_module_with_a_lifetime_and_an_etag_of_its_version_and_content() -> None:
    reply = client_reply({})
    assert reply.status == 200
    assert reply.body == SHIPPED
    assert reply.content_type == b"text/javascript; charset=utf-8"
    assert header(reply.extra, b"cache-control") == b"public, max-age=3600"
    assert header(reply.extra, b"access-control-allow-origin") == b"*"  # importable anywhere
    digest = hashlib.sha256(SHIPPED).hexdigest()[:16]
    assert header(reply.extra, b"etag") == f'"{__version__}-{digest}"'.encode()


def test_a_matching_if_none_match_gets_304_without_a_body() -> None:
    etag = header(client_reply({}).extra, b"etag").decode()
    for presented in (etag, f'"other", {etag}', f"W/{etag}", "*"):
        reply = client_reply({"if-none-match": presented})
        assert (reply.status, reply.body) == (304, b""), presented
        assert header(reply.extra, b"etag") == etag.encode()
    assert client_reply({"if-none-match": '"0.0.0-stale"'}).status == 200


def test_the_304_carries_no_content_length() -> None:
    etag = header(client_reply({}).extra, b"etag").decode()
    head = client_reply({"if-none-match": etag}).encode()
    assert head.startswith(b"HTTP/1.1 304 Not Modified\r\n")
    assert b"content-length" not in head and head.endswith(b"\r\n\r\n")
    full = client_reply({}).encode()
    assert b"content-length: %d\r\n" % len(SHIPPED) in full and full.endswith(SHIPPED)


def test_it_is_not_a_docs_path_and_the_asgi_entry_serves_it_without_docs() -> None:
    for app in (SocketApp(), SocketApp(docs=True, docs_access_token="secret")):
        assert not is_docs_path(app, CLIENT_PATH)  # so no docs token is asked for
        entry = SocketASGI(app, path="/ws")
        assert entry.serves_path({"type": "http", "path": CLIENT_PATH})
    assert SocketASGI(None, path="/ws").serves_path({"type": "http", "path": CLIENT_PATH})
