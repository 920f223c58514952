"""The docs page's script keeps no protocol code of its own: its simulated clients are the
shipped browser client (``static/socketspec.js``), imported with the page's query."""

from __future__ import annotations

import re
from importlib import resources

STATIC = resources.files("socketspec.apidocs").joinpath("static")
APP_JS = STATIC.joinpath("app.js").read_text(encoding="utf-8")
SHIPPED = STATIC.joinpath("socketspec.js").read_text(encoding="utf-8")


def test_the_page_imports_the_shipped_client_with_its_query() -> None:
    assert 'import(CFG.docsUrl + "/static/socketspec.js" + CFG.query)' in APP_JS
    assert "new socketspec.Client(" in APP_JS


def test_the_page_opens_no_socket_and_speaks_no_protocol_itself() -> None:
    assert "new WebSocket" not in APP_JS
    # Frames go out through the client's emit, call and sendRaw (a card's send() takes none).
    assert not re.search(r"\.send\([^)]", APP_JS)
    assert ".readyState === WebSocket" not in APP_JS and "WebSocket.OPEN" not in APP_JS
    assert "nextAck" not in APP_JS and "pending" not in APP_JS  # acks are the client's calls
    assert not re.search(r"event:\s*\"__pong__\"", APP_JS)  # the client answers the pings
    assert "encodeURIComponent(token)" not in APP_JS  # the client puts the token in the URL


def test_the_shipped_client_has_the_hooks_the_page_uses() -> None:
    for used in ("reconnect: false", "onFrame:", "conn.sendRaw(", "conn.call(", "conn.emit("):
        assert used in APP_JS, used
    assert re.search(r"\bsendRaw\(", SHIPPED) and "onFrame" in SHIPPED
    assert "export class Client" in SHIPPED
