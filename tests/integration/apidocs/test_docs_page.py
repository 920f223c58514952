"""The interactive docs page in Debian's Chromium, against real 2-shard clusters: the chat
example (docs=True, no auth) and an app with JWT auth, a docs access token and two
namespaces; its simulated clients are the shipped browser client, which a plain module script
also imports from ``/socketspec.js``. A failed test leaves ``failure.png`` in its tmp_path
(see docs_browser.py)."""

from __future__ import annotations

import contextlib
import http.server
import json
import re
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:
    sys.path.insert(0, HERE)

pytest.register_assert_rewrite("docs_browser")
from docs_browser import REPO, DocsPage, Served, http_get, user_token  # noqa: E402

ADAPTER_TESTS = str(REPO / "tests" / "integration" / "adapters")
if ADAPTER_TESTS not in sys.path:
    sys.path.insert(0, ADAPTER_TESTS)
from asgikit import UvicornProcess  # noqa: E402

pytest_plugins = ["docs_browser"]

STATIC = REPO / "src" / "socketspec" / "apidocs" / "static"
CARDS = '[data-testid^="event-card-"]'


def search_text(d: Any) -> str:
    """What the page's search box matches an event against (kept in step with app.js)."""
    parts = [
        d.name,
        d.namespace,
        d.description,
        " ".join(d.tags),
        " ".join(f"{e.event} {e.description}" for e in d.emits),
        " ".join(f"{b.event} {b.room or ''}" for b in d.broadcasts),
        "ordered" if d.ordered else "",
        "deprecated" if d.deprecated else "",
    ]
    return " ".join(parts).lower()


def visible_cards(docs: DocsPage) -> set[tuple[str | None, str | None]]:
    return {
        (card.get_attribute("data-event"), card.get_attribute("data-namespace"))
        for card in docs.page.locator(CARDS + ":visible").all()
    }


def test_assets_are_self_contained() -> None:
    """Nothing the page ships points anywhere but the server that serves it."""
    names = sorted(p.name for p in STATIC.iterdir())
    assert {"index.html", "app.js", "style.css"} <= set(names)
    external = re.compile(r"(?:https?:|wss?:)?//[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+|@import|url\(")
    for name in names:
        text = (STATIC / name).read_text()
        assert not external.search(text), (name, external.search(text))
    page = (STATIC / "index.html").read_text()
    for ref in re.findall(r'(?:src|href)="([^"]*)"', page):
        assert ref.startswith(("__DOCS_URL__/", "data:")), ref


@pytest.mark.parametrize("served_by", ["chat_served", "secured_served"])
def test_page_lists_every_event(
    served_by: str, request: pytest.FixtureRequest, docs: DocsPage
) -> None:
    served: Served = request.getfixturevalue(served_by)
    docs.open(served.docs_url())
    definitions = served.app.event_definitions()
    cards = docs.page.locator(CARDS)
    expect(cards).to_have_count(len(definitions))
    assert visible_cards(docs) == served.events()
    count = len(definitions)
    expect(docs.page.get_by_test_id("event-count")).to_have_text(f"{count} events")

    for d in definitions:
        card = docs.card(d.name, d.namespace)
        group = d.tags[0] if d.tags else "default"
        expect(
            docs.page.get_by_test_id(f"tag-group-{group}").locator(
                f'[data-testid="event-card-{d.name}"][data-namespace="{d.namespace}"]'
            )
        ).to_have_count(1)
        expect(card.get_by_test_id("card-namespace")).to_have_text(d.namespace)
        expect(card.get_by_test_id("badge-ordered")).to_have_count(1 if d.ordered else 0)
        expect(card.get_by_test_id("badge-deprecated")).to_have_count(1 if d.deprecated else 0)
        if d.description:
            expect(card.get_by_test_id("card-toggle")).to_contain_text(d.description)

    # Expanded, every card shows its payload fields, what it emits and what it broadcasts.
    docs.page.get_by_test_id("expand-all").click()
    for d in definitions:
        card = docs.card(d.name, d.namespace)
        schema = d.payload_schema() or {}
        table = card.get_by_test_id("payload-schema")
        for name in schema.get("properties", {}):
            row = table.locator(f'tr[data-field="{name}"]')
            expect(row).to_have_count(1)
            required = name in schema.get("required", [])
            expect(row).to_contain_text("required" if required else "optional")
        for emitted in d.emits:
            expect(card.get_by_test_id(f"emit-{emitted.event}")).to_have_count(1)
        for broadcast in d.broadcasts:
            block = card.get_by_test_id(f"broadcast-{broadcast.event}")
            expect(block).to_have_count(1)
            if broadcast.room:
                expect(block).to_contain_text(broadcast.room)

    # The search box filters by name, description and tag.
    search = docs.page.get_by_test_id("search")
    tags = sorted({t for d in definitions for t in d.tags})
    queries = [*tags, "room", "message", definitions[0].name]
    for query in queries:
        search.fill(query)
        expected = {(d.name, d.namespace) for d in definitions if query in search_text(d)}
        expect(docs.page.locator(CARDS + ":visible")).to_have_count(len(expected))
        assert visible_cards(docs) == expected, query
    search.fill("no-such-event-anywhere")
    expect(docs.page.locator(CARDS + ":visible")).to_have_count(0)
    expect(docs.page.get_by_test_id("no-match")).to_be_visible()
    search.fill("")
    expect(docs.page.locator(CARDS + ":visible")).to_have_count(count)

    # Offline: everything the page loaded came from the server it was opened on.
    assert docs.requests and all(url.startswith(served.base + "/") for url in docs.requests), (
        docs.requests
    )
    assert docs.errors == []


def test_try_it_round_trip(chat_served: Served, docs: DocsPage) -> None:
    docs.open(chat_served.docs_url())
    docs.connect(1)  # the page connects its first client itself when the app has no auth

    card = docs.open_card("set_name")
    editor = card.get_by_test_id("try-editor")
    assert json.loads(editor.input_value()) == {"name": "string"}  # from the schema
    docs.send(card, '{"name": "ada"}')
    expect(docs.replies(card, kind="sent", event="set_name")).to_have_count(1)
    ack = docs.replies(card, kind="ack")
    expect(ack).to_have_count(1)
    expect(ack).to_contain_text('{"name": "ada"}')
    expect(docs.log(1, direction="out", event="set_name")).to_have_count(1)
    acked = docs.log(1, direction="in", event="__ack__")
    expect(acked).to_have_count(1)
    expect(acked).to_have_attribute("data-ack", "1")

    # Events the handler emits show up under the card as well as its ack.
    card = docs.open_card("join_room")
    docs.send(card, '{"room": "round-trip"}')
    joined = docs.replies(card, kind="event", event="joined")
    expect(joined).to_have_count(1)
    expect(joined).to_contain_text('"members": 1')
    expect(docs.replies(card, kind="ack")).to_contain_text('"room": "round-trip"')
    expect(docs.log(1, direction="in", event="joined")).to_have_count(1)
    assert docs.errors == []


def test_validation_error_is_shown(chat_served: Served, docs: DocsPage) -> None:
    docs.open(chat_served.docs_url())
    docs.connect(1)
    card = docs.open_card("send_message")
    editor = card.get_by_test_id("try-editor")
    assert set(json.loads(editor.input_value())) == {"room", "text"}

    docs.send(card, '{"room": "lobby", "text": ""}')
    error = docs.replies(card, kind="error", code="VALIDATION_ERROR")
    expect(error).to_have_count(1)
    expect(error.get_by_test_id("error-code")).to_have_text("VALIDATION_ERROR")
    expect(error.locator(".error-list")).to_contain_text("text")
    logged = docs.log(1, direction="in", event="__error__", code="VALIDATION_ERROR")
    expect(logged).to_have_count(1)
    expect(logged).to_have_attribute("data-ack", "1")

    # A payload that is not JSON never leaves the page.
    sent = docs.log(1, direction="out").count()
    editor.fill('{"room": ')
    expect(card.get_by_test_id("try-editor-error")).to_be_visible()
    card.get_by_test_id("try-send").click()
    expect(docs.log(1, direction="out")).to_have_count(sent)
    assert docs.errors == []


def test_two_clients_in_one_room_both_see_a_broadcast(
    secured_served: Served, docs: DocsPage
) -> None:
    docs.open(secured_served.docs_url())
    alice = docs.connect(1, token=user_token("alice"))
    bob = docs.connect(2, token=user_token("bob"))
    expect(alice.get_by_test_id("client-info")).to_contain_text("user alice")
    expect(bob.get_by_test_id("client-info")).to_contain_text("user bob")

    join = docs.open_card("join")
    docs.send(join, '{"room": "blue"}', client=1)
    expect(docs.replies(join, kind="ack")).to_have_count(1)
    docs.send(join, '{"room": "blue"}', client=2)
    expect(docs.replies(join, kind="ack")).to_have_count(2)
    expect(docs.replies(join, kind="ack").last).to_contain_text('"members": 2')

    say = docs.open_card("say")
    docs.send(say, '{"room": "blue", "text": "hello from alice"}', client=1)
    for n in (1, 2):
        said = docs.log(n, direction="in", event="said")
        expect(said).to_have_count(1)
        expect(said).to_contain_text("hello from alice")
        expect(said).to_contain_text('"user": "alice"')
    expect(docs.replies(say, kind="ack")).to_contain_text('"delivered"')
    expect(docs.replies(say, kind="event", event="said")).to_have_count(1)
    assert docs.errors == []


def test_examples_from_the_schema_and_namespaces(secured_served: Served, docs: DocsPage) -> None:
    docs.open(secured_served.docs_url())
    docs.connect(1, token=user_token("carol"))
    docs.connect(2, token=user_token("root", "admin"), namespace="/admin")
    expect(docs.client(2).get_by_test_id("client-url")).to_contain_text("/ws/admin?token=")

    # The prefilled example satisfies every constraint of the model, so it goes through as is.
    order = docs.open_card("place_order")
    example = json.loads(order.get_by_test_id("try-editor").input_value())
    assert example["quantity"] == 1 and example["priority"] == "low"
    assert example["gift"] is False and example["discount"] == 5  # defaults
    assert re.fullmatch(r"[A-Z0-9-]{3,12}", example["sku"])
    assert re.fullmatch(r"[0-9]{5}", example["ship_to"]["zip_code"])
    assert example["price"] > 0 and example["labels"] and len(example["ship_to"]["city"]) >= 2
    docs.send(order, client=1)
    expect(docs.replies(order, kind="ack")).to_contain_text('"sku"')
    expect(docs.replies(order, kind="event", event="order_accepted")).to_have_count(1)
    expect(docs.replies(order, kind="error")).to_have_count(0)

    # An event of /admin goes through the client on /admin; sent from "/" it is unknown.
    whoami = docs.open_card("whoami", "/admin")
    expect(whoami.get_by_test_id("try-client")).to_have_value("2")
    docs.send(whoami)
    ack = docs.replies(whoami, kind="ack")
    expect(ack).to_contain_text('"namespace": "/admin"')
    expect(ack).to_contain_text('"user": "root"')
    whoami.get_by_test_id("try-client").select_option("1")
    expect(whoami.get_by_test_id("try-ns-warning")).to_be_visible()
    docs.send(whoami)
    expect(docs.replies(whoami, kind="error", code="UNKNOWN_EVENT")).to_have_count(1)

    # The page answers the server's pings (every 0.5 s here) with pongs by itself.
    expect(docs.log(2, direction="in", event="__ping__").nth(1)).to_be_attached()
    expect(docs.log(2, direction="out", event="__pong__").nth(1)).to_be_attached()
    pings = docs.log(1, direction="in", event="__ping__").count()
    assert docs.log(1, direction="out", event="__pong__").count() >= pings - 1
    docs.page.get_by_test_id("hide-heartbeats").check()
    expect(docs.log(1, event="__ping__").first).to_be_hidden()
    expect(docs.client(1)).to_have_attribute("data-state", "connected")
    assert docs.errors == []


def test_docs_need_the_access_token(secured_served: Served, docs: DocsPage) -> None:
    base, token = secured_served.base, secured_served.docs_token
    assert token is not None
    docs_url = secured_served.app.docs_url
    paths = [docs_url, f"{docs_url}/schema", "/asyncapi.json", f"{docs_url}/static/app.js"]
    for path in paths:
        status, _, headers = http_get(base + path)
        assert status == 401, path
        assert "bearer" in headers.get("www-authenticate", "").lower(), path
        assert http_get(f"{base}{path}?token=wrong")[0] == 401, path
        assert http_get(base + path, {"Authorization": "Bearer wrong"})[0] == 401, path
        assert http_get(f"{base}{path}?token={token}")[0] == 200, path
        assert http_get(base + path, {"Authorization": f"Bearer {token}"})[0] == 200, path
    schema = json.loads(http_get(f"{base}{docs_url}/schema?token={token}")[1])
    assert {e["name"] for e in schema["events"]} == {n for n, _ in secured_served.events()}

    # Without the token the browser gets a 401 and no page (in a tab of its own: the 401 and
    # the browser's /favicon.ico after it log console errors).
    tab = docs.page.context.new_page()
    response = tab.goto(secured_served.docs_url(token=False))
    assert response is not None and response.status == 401
    expect(tab.get_by_test_id("event-groups")).to_have_count(0)
    tab.close()

    # With ?token= the page passes the token on to its stylesheet, script and schema.
    docs.open(secured_served.docs_url())
    assert docs.responses and all(status == 200 for _, status in docs.responses), docs.responses
    loaded = {url.split("?")[0].removeprefix(base) for url, _ in docs.responses}
    assert {docs_url, f"{docs_url}/static/style.css", f"{docs_url}/static/app.js"} <= loaded
    assert f"{docs_url}/schema" in loaded
    topbar = docs.page.locator(".topbar")
    assert topbar.evaluate("el => getComputedStyle(el).display") == "flex"  # style.css applied
    expect(docs.page.get_by_test_id("auth-kind")).to_have_text("auth: JWTAuth")
    assert docs.errors == []


def test_the_simulated_clients_are_the_shipped_browser_client(
    chat_served: Served, docs: DocsPage
) -> None:
    docs.open(chat_served.docs_url())
    docs.connect(1)
    module_url = f"{chat_served.base}{chat_served.app.docs_url}/static/socketspec.js"
    assert module_url in docs.requests  # imported by app.js (the page's module graph)
    assert (module_url, 200) in docs.responses
    # The same URL is the same module instance: every simulated client is one of its Clients.
    same = docs.page.evaluate(
        """async (url) => {
            const shipped = await import(url);
            const clients = window.socketspecDocs.state.clients;
            return clients.length > 0 && clients.every((c) => c.conn instanceof shipped.Client);
        }""",
        module_url,
    )
    assert same is True
    served = http_get(module_url)[1]
    assert served == (STATIC / "socketspec.js").read_bytes()
    assert b"new WebSocket" not in http_get(f"{chat_served.base}/socket-docs/static/app.js")[1]

    # "Send frame" sends exactly what was typed, even text that is not JSON: the log shows it
    # with its size in bytes, then the server's answer.
    panel = docs.client(1)
    typed = '{"event": "set_name", "payload": {"name": "Zoë"'
    panel.get_by_test_id("client-raw").fill(typed)
    panel.get_by_test_id("client-raw-send").click()
    raw = docs.log(1, direction="out", event="")
    expect(raw).to_have_count(1)
    expect(raw.locator(".log-json")).to_have_text(typed)
    expect(raw.locator(".log-size")).to_have_text(f"{len(typed.encode())} B")
    expect(docs.log(1, direction="in", event="__error__", code="VALIDATION_ERROR")).to_have_count(1)
    expect(panel).to_have_attribute("data-state", "connected")  # an error, not a close

    # A raw frame with an ack of its own is answered like any other.
    with_ack = '{"event": "set_name", "payload": {"name": "raw"}, "ack": 99}'
    panel.get_by_test_id("client-raw").fill(with_ack)
    panel.get_by_test_id("client-raw-send").click()
    expect(docs.log(1, direction="in", event="__ack__")).to_have_attribute("data-ack", "99")

    # Disconnect: closed for good (no reconnection), with the close code in the status.
    panel.get_by_test_id("client-connect").click()
    expect(panel).to_have_attribute("data-state", "closed")
    expect(panel.get_by_test_id("client-status")).to_have_text("closed 1000 · normal closure")
    docs.page.wait_for_timeout(1000)
    expect(docs.log(1, direction="in", event="__connect__")).to_have_count(1)
    assert docs.errors == []


PLAIN_PAGE = """<!doctype html>
<meta charset="utf-8">
<title>a page of the app's own</title>
<link rel="icon" href="data:,">
<script type="module">
  import { connect } from "SOURCE";
  const client = await connect(`ws://${new URL("SOURCE", location.href).host}/ws`);
  const reply = await client.call("set_name", { name: "plain" });
  document.body.dataset.reply = JSON.stringify(reply);
  client.close();
</script>
"""


@contextlib.contextmanager
def page_server(body: str) -> Iterator[str]:
    """A server of one HTML page on a loopback port of its own: another origin than the
    cluster's. Yields the page's URL."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            data = body.encode()
            self.send_response(200)
            self.send_header("content-type", "text/html; charset=utf-8")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/a-page-of-the-app.html"
    finally:
        server.shutdown()
        server.server_close()


def test_a_plain_module_script_imports_the_client_from_the_root(
    chat_served: Served, docs: DocsPage
) -> None:
    """``import {connect} from "/socketspec.js"`` in a page of the server's origin, then the
    absolute URL in a page of another origin (a module script across origins needs CORS)."""
    client_url = f"{chat_served.base}/socketspec.js"
    reply = expect(docs.page.locator("body"))
    # A document of the cluster's origin (the docs page), replaced by nothing but the plain page.
    docs.open(chat_served.docs_url())
    docs.page.set_content(PLAIN_PAGE.replace("SOURCE", "/socketspec.js"))
    reply.to_have_attribute("data-reply", '{"name":"plain"}')
    assert (client_url, 200) in docs.responses

    with page_server(PLAIN_PAGE.replace("SOURCE", client_url)) as elsewhere:
        docs.page.goto(elsewhere)
        reply.to_have_attribute("data-reply", '{"name":"plain"}')
    assert docs.errors == []


def test_the_client_at_the_root_needs_no_docs_token(secured_served: Served) -> None:
    base = secured_served.base
    status, body, headers = http_get(base + "/socketspec.js")
    assert status == 200 and body == (STATIC / "socketspec.js").read_bytes()
    assert headers["content-type"] == "text/javascript; charset=utf-8"
    assert http_get(f"{base}{secured_served.app.docs_url}/static/socketspec.js")[0] == 401


@pytest.fixture(scope="module")
def uvicorn_chat() -> Iterator[str]:
    """``uvicorn examples.fastapi_chat:app`` (the socket mounted in FastAPI, docs=True): its
    base URL."""
    server = UvicornProcess(["examples.fastapi_chat:app"], cwd=REPO)
    try:
        server.wait_ready()
        yield server.http
    finally:
        server.stop()
        server.cleanup()


def test_the_page_under_the_asgi_adapter(uvicorn_chat: str, docs: DocsPage) -> None:
    """The same page and client under uvicorn with ``mount()``: the page connects its first
    client, a call is answered, the broadcast comes back to the sender."""
    docs.open(uvicorn_chat + "/socket-docs")
    panel = docs.connect(1)
    expect(panel.get_by_test_id("client-url")).to_have_text(
        uvicorn_chat.replace("http:", "ws:") + "/ws"
    )
    join = docs.open_card("join")
    docs.send(join, '{"room": "lobby", "name": "ada"}')
    expect(docs.replies(join, kind="ack")).to_contain_text('"members": 1')
    expect(docs.replies(join, kind="event", event="joined")).to_contain_text('"name": "ada"')
    expect(docs.log(1, direction="out", event="join")).to_have_attribute("data-ack", "1")
    assert f"{uvicorn_chat}/socket-docs/static/socketspec.js" in docs.requests
    assert docs.errors == []
