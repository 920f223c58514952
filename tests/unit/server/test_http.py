"""Request head parsing and plain responses."""

from __future__ import annotations

from socketspec.server import http


def feed_all(data: bytes) -> http.RequestHead | http.HeadError | None:
    return http.RequestHeadReader().feed(data)


def test_upgrade_request_is_recognised_with_path_query_and_trailing_bytes() -> None:
    head = feed_all(
        b"GET /ws/chat?token=abc&x=1 HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n"
        b"Connection: keep-alive, Upgrade\r\nOrigin: https://o.example\r\n\r\nEARLY"
    )
    assert isinstance(head, http.RequestHead)
    assert head.is_websocket_upgrade
    assert head.path == "/ws/chat"
    assert head.query == {"token": "abc", "x": "1"}
    assert head.header_map["origin"] == "https://o.example"
    assert head.trailing == b"EARLY"


def test_plain_request_is_not_an_upgrade() -> None:
    head = feed_all(b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n")
    assert isinstance(head, http.RequestHead)
    assert not head.is_websocket_upgrade


def test_partial_head_needs_more() -> None:
    reader = http.RequestHeadReader()
    assert reader.feed(b"GET / HTTP/1.1\r\nHost:") is None
    assert isinstance(reader.feed(b" a\r\n\r\n"), http.RequestHead)


def test_malformed_head_is_400() -> None:
    result = feed_all(b"NOT HTTP AT ALL\r\n\r\n")
    assert isinstance(result, http.HeadError)
    assert result.status == 400


def test_head_over_16_kib_is_431() -> None:
    reader = http.RequestHeadReader()
    result = reader.feed(b"GET / HTTP/1.1\r\nX-Big: " + b"a" * (17 * 1024))
    assert isinstance(result, http.HeadError)
    assert result.status == 431


def test_responses_close_the_connection_and_carry_length() -> None:
    raw = http.json_response(200, {"ok": True})
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK")
    assert b"connection: close" in head
    assert b"content-length: %d" % len(body) in head
    assert body == b'{"ok":true}'
    assert http.text_response(403, "forbidden: origin").endswith(b"forbidden: origin\n")


def test_reply_encodes_as_the_response_with_its_extra_headers() -> None:
    reply = http.Reply(401, b"no\n", extra=((b"www-authenticate", b"Bearer"),))
    assert reply.encode() == http.response(401, b"no\n", extra=[(b"www-authenticate", b"Bearer")])
    assert http.text_reply(404, "not found: /x") == http.Reply(404, b"not found: /x\n")


def test_namespace_at_a_base_path() -> None:
    assert http.namespace_at("/ws", "/ws") == "/"
    assert http.namespace_at("/ws/", "/ws/") == "/"
    assert http.namespace_at("/ws", "/ws/admin") == "/admin"
    assert http.namespace_at("/ws", "/ws/admin/") == "/admin"
    assert http.namespace_at("/ws", "/wsx") is None
    assert http.namespace_at("/ws", "/other") is None


def test_namespace_at_the_root_path() -> None:
    assert http.namespace_at("/", "/") == "/"
    assert http.namespace_at("/", "/admin") == "/admin"
