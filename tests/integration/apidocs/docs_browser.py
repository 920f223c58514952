"""Fixtures and helpers for the docs page's browser tests (a pytest plugin: the test module
names it in ``pytest_plugins``).

Clusters run as real ``socketspec-cluster`` subprocesses (``clusterkit.ClusterProcess`` from
the cluster tests: own session, SIGKILLed with every shard at the end). The browser is
Debian's Chromium, driven by Playwright's sync API. When a test fails, the page it was
driving is saved as ``failure.png`` (and ``failure.html``) in the test's ``tmp_path``; the
report names the file.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import jwt
import pytest
from playwright.sync_api import Browser, Locator, Page, Playwright, expect, sync_playwright

HERE = Path(__file__).resolve().parent
APPS = HERE / "apps"
REPO = HERE.parents[2]
CLUSTER_TESTS = REPO / "tests" / "integration" / "cluster"
if str(CLUSTER_TESTS) not in sys.path:
    sys.path.insert(0, str(CLUSTER_TESTS))

from clusterkit import ClusterProcess  # noqa: E402

CHROMIUM = os.environ.get("SOCKETSPEC_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
]
VIEWPORT = {"width": 1600, "height": 1000}
TIMEOUT_MS = 10_000

expect.set_options(timeout=TIMEOUT_MS)


def load_module(path: Path, name: str) -> ModuleType:
    """Import the file at ``path`` as module ``name`` (the test's view of an app's events)."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # pydantic resolves the models' annotations through it
    spec.loader.exec_module(module)
    return module


SECURED = load_module(APPS / "docs_page_app.py", "docs_page_app_for_tests")


def user_token(user: str, role: str = "member") -> str:
    """A JWT the secured app accepts."""
    return jwt.encode({"sub": user, "role": role}, SECURED.JWT_SECRET, algorithm="HS256")


# -- clusters ----------------------------------------------------------------------------------


@dataclass
class Served:
    """A running cluster and what it serves."""

    cluster: ClusterProcess
    app: Any  # the SocketApp, imported in the test process
    docs_token: str | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.cluster.port}"

    def docs_url(self, *, token: bool = True) -> str:
        url = self.base + self.app.docs_url
        if token and self.docs_token:
            url += "?token=" + self.docs_token
        return url

    def events(self) -> set[tuple[str, str]]:
        return {(d.name, d.namespace) for d in self.app.event_definitions()}


def http_get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes, Any]:
    """GET ``url``: (status, body, headers), also for error statuses."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read(), response.headers
    except urllib.error.HTTPError as err:
        return err.code, err.read(), err.headers


def start_cluster(target: str, *, cwd: Path, env: dict[str, str] | None = None) -> ClusterProcess:
    """``socketspec-cluster TARGET`` on 2 shards and free ports, ready when every shard is."""
    path = os.pathsep.join(p for p in (str(REPO), str(APPS), os.environ.get("PYTHONPATH", "")) if p)
    cluster = ClusterProcess(
        [target, "--workers", "2", "--port", "0", "--metrics-port", "0"],
        cwd=cwd,
        env={"PYTHONPATH": path, **(env or {})},
    )
    try:
        cluster.wait_announced(60)
        deadline = time.monotonic() + 30
        while http_get(f"http://127.0.0.1:{cluster.port}/readyz")[0] != 200:
            assert time.monotonic() < deadline, "the cluster's shards did not all get ready"
            assert cluster.proc.poll() is None, cluster.stderr_text()[-3000:]
            time.sleep(0.05)
    except BaseException:
        cluster.kill()
        raise
    return cluster


@pytest.fixture(scope="module")
def chat_served() -> Iterator[Served]:
    """``examples.chat:socket`` (docs=True, no auth, no docs token) on a 2-shard cluster."""
    chat = load_module(REPO / "examples" / "chat.py", "docs_page_chat_example")
    app = chat.create_app(None)
    cluster = start_cluster("examples.chat:socket", cwd=REPO, env={"CHAT_JWT_SECRET": ""})
    try:
        yield Served(cluster, app)
    finally:
        cluster.kill()


@pytest.fixture(scope="module")
def secured_served() -> Iterator[Served]:
    """``docs_page_app:app`` (JWT auth, a docs access token, two namespaces) on 2 shards."""
    cluster = start_cluster("docs_page_app:app", cwd=APPS)
    try:
        yield Served(cluster, SECURED.app, docs_token=SECURED.DOCS_TOKEN)
    finally:
        cluster.kill()


# -- the browser -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def playwright_driver() -> Iterator[Playwright]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium")
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright_driver: Playwright) -> Iterator[Browser]:
    browser = playwright_driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    try:
        yield browser
    finally:
        browser.close()


@dataclass
class DocsPage:
    """A fresh browser context and page for one test, recording what the page did."""

    page: Page
    out_dir: Path
    requests: list[str] = field(default_factory=list)
    responses: list[tuple[str, int]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def open(self, url: str) -> None:
        """Open the docs page and wait until it has rendered the schema."""
        response = self.page.goto(url)
        assert response is not None and response.status == 200, response
        expect(self.page.locator("body")).to_have_attribute("data-ready", "true")

    def card(self, name: str, namespace: str = "/") -> Locator:
        return self.page.locator(f'[data-testid="event-card-{name}"][data-namespace="{namespace}"]')

    def open_card(self, name: str, namespace: str = "/") -> Locator:
        """The card of ``name``, expanded, with its "Try it out" panel open."""
        card = self.card(name, namespace)
        body = card.get_by_test_id("card-body")
        if not body.is_visible():
            card.get_by_test_id("card-toggle").click()
        expect(body).to_be_visible()
        panel = card.get_by_test_id("try-panel")
        if not panel.is_visible():
            card.get_by_test_id("try-it").click()
        expect(panel).to_be_visible()
        return card

    def send(self, card: Locator, payload: str | None = None, client: int | None = None) -> None:
        """Send the card's event from simulated client ``client`` (default: the selected one)
        with ``payload`` (default: whatever the editor holds)."""
        if client is not None:
            card.get_by_test_id("try-client").select_option(str(client))
        if payload is not None:
            card.get_by_test_id("try-editor").fill(payload)
        card.get_by_test_id("try-send").click()

    def client(self, n: int) -> Locator:
        return self.page.get_by_test_id(f"client-{n}")

    def connect(self, n: int, token: str | None = None, namespace: str | None = None) -> Locator:
        """Connect simulated client ``n`` (added first when the page has fewer clients)."""
        panel = self.client(n)
        while panel.count() == 0:
            self.page.get_by_test_id("add-client").click()
        expect(panel).not_to_have_attribute("data-state", "connecting")
        if panel.get_attribute("data-state") == "connected":
            if token is None and namespace is None:
                return panel  # connected by the page already
            panel.get_by_test_id("client-connect").click()  # disconnect, to change them
            expect(panel).not_to_have_attribute("data-state", "connected")
        if namespace is not None:
            panel.get_by_test_id("client-namespace").select_option(namespace)
        if token is not None:
            panel.get_by_test_id("client-token").fill(token)
        panel.get_by_test_id("client-connect").click()
        expect(panel).to_have_attribute("data-state", "connected")
        return panel

    def log(self, n: int, **attrs: str) -> Locator:
        """The entries of client ``n``'s frame log, filtered by data attributes
        (``event="__ack__"``, ``direction="in"``, ``code=...``)."""
        selector = '[data-testid="log-entry"]' + "".join(
            f'[data-{key}="{value}"]' for key, value in attrs.items()
        )
        return self.client(n).get_by_test_id("client-log").locator(selector)

    def replies(self, card: Locator, **attrs: str) -> Locator:
        """The rows shown inline under a card, filtered by data attributes (``kind="ack"``)."""
        selector = '[data-testid="try-reply"]' + "".join(
            f'[data-{key}="{value}"]' for key, value in attrs.items()
        )
        return card.get_by_test_id("try-result").locator(selector)


@pytest.fixture
def docs(browser: Browser, tmp_path: Path) -> Iterator[DocsPage]:
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    docs_page = DocsPage(page, tmp_path)
    page.on("request", lambda request: docs_page.requests.append(request.url))
    page.on(
        "response", lambda response: docs_page.responses.append((response.url, response.status))
    )
    page.on("pageerror", lambda error: docs_page.errors.append(str(error)))
    page.on(
        "console",
        lambda message: docs_page.errors.append(message.text) if message.type == "error" else None,
    )
    try:
        yield docs_page
    finally:
        context.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """On a failed test that drove a docs page, save what the page looked like."""
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" or not report.failed:
        return
    docs_page = getattr(item, "funcargs", {}).get("docs")
    if not isinstance(docs_page, DocsPage):
        return
    shot = docs_page.out_dir / "failure.png"
    try:
        docs_page.page.screenshot(path=str(shot), full_page=True)
        (docs_page.out_dir / "failure.html").write_text(docs_page.page.content())
    except Exception as err:  # the page or the browser may be what failed
        report.sections.append(("docs page screenshot", f"could not save one: {err!r}"))
        return
    report.sections.append(("docs page screenshot", str(shot)))
