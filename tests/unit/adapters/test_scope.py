"""Reading an ASGI scope into what the application's entry points take."""

from __future__ import annotations

from socketspec.adapters.scope import header_map, query_params, route_path


def test_headers_are_lower_cased_and_repeats_joined() -> None:
    raw = [(b"Origin", b"http://a.example"), (b"X-Tag", b"one"), (b"x-tag", b"two")]
    assert header_map(raw) == {"origin": "http://a.example", "x-tag": "one, two"}


def test_query_keeps_blank_values_and_decodes_escapes() -> None:
    assert query_params(b"token=a%20b&flag=&x=1") == {"token": "a b", "flag": "", "x": "1"}
    assert query_params(b"") == {}


def test_route_path_drops_the_root_path_of_an_enclosing_mount() -> None:
    assert route_path({"path": "/api/ws/chat", "root_path": "/api"}) == "/ws/chat"
    assert route_path({"path": "/api", "root_path": "/api"}) == "/"
    assert route_path({"path": "/ws", "root_path": ""}) == "/ws"
    assert route_path({"path": "/ws"}) == "/ws"
