"""Fixtures and helpers for the browser client's acceptance tests (a pytest plugin: the test
module names it in ``pytest_plugins``).

The cluster is a real 2-shard ``socketspec-cluster`` process running
``apps/browser_client_app.py`` (``clusterkit.ClusterProcess``: its own session, SIGKILLed
with every shard at the end). The browser is Debian's Chromium with the docs page tests'
launch arguments, driven by Playwright's sync API. A page opens a plain HTTP URL of the
cluster, so that it imports the shipped client from the cluster's own origin the way an app
without npm does, and drives it through ``page.evaluate``: what the clients see is recorded
in ``window.seen`` for the test to read. When a test fails, every page it drove is saved as
``failure-<n>.png`` (and ``.html``) in the test's ``tmp_path``; the report names the files.
"""

from __future__ import annotations

import importlib.util
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
from playwright.sync_api import Browser, Page, Playwright, sync_playwright

HERE = Path(__file__).resolve().parent
APPS = HERE / "apps"
REPO = HERE.parents[2]
for beside in ("cluster", "apidocs"):  # clusterkit and docs_browser
    if str(REPO / "tests" / "integration" / beside) not in sys.path:
        sys.path.insert(0, str(REPO / "tests" / "integration" / beside))

# The docs page's tests register docs_browser for assertion rewriting too: whichever module
# imports it first must have registered it, or pytest warns that it cannot rewrite it.
pytest.register_assert_rewrite("docs_browser")
from clusterkit import READY, ClusterProcess  # noqa: E402
from docs_browser import CHROMIUM, CHROMIUM_ARGS  # noqa: E402

# Where the page imports the client from, as a page without npm does: the cluster's own copy.
CLIENT_MODULE = "/socketspec.js"
SHARDS = 2
TIMEOUT_MS = 15_000
# Events the client emits itself, and the app's broadcast, recorded for every client.
RECORDED = ["connect", "reconnect", "disconnect", "close", "refreshed", "auth_error", "said"]


def load_module(path: Path, name: str) -> ModuleType:
    """Import the file at ``path`` as module ``name`` (the test's view of the app)."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


APP = load_module(APPS / "browser_client_app.py", "browser_client_app_for_tests")


def user_token(user: str, expires_in: float | None = None) -> str:
    """A JWT the app accepts, expiring ``expires_in`` seconds from now (never, when None)."""
    claims: dict[str, Any] = {"sub": user}
    if expires_in is not None:
        claims["exp"] = int(time.time() + expires_in)
    return jwt.encode(claims, APP.JWT_SECRET, algorithm="HS256")


def http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as err:
        return err.code
    except OSError:
        return 0


# -- the cluster -------------------------------------------------------------------------------


@dataclass
class Cluster:
    """The running cluster: its process and its addresses."""

    process: ClusterProcess

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.process.port}"

    @property
    def ws_url(self) -> str:
        return self.process.url()

    def wait_ready(self, shard: int, not_pids: set[int], timeout: float = 60.0) -> int:
        """The pid of the next instance of ``shard`` that reported ready, not one of
        ``not_pids`` (a replacement the supervisor started)."""
        deadline = time.monotonic() + timeout
        while True:
            for found in READY.finditer(self.process.stderr_text()):
                if int(found.group(1)) == shard and int(found.group(2)) not in not_pids:
                    return int(found.group(2))
            assert time.monotonic() < deadline, (
                f"shard {shard} was not replaced within {timeout:g}s:\n"
                + self.process.stderr_text()[-3000:]
            )
            assert self.process.proc.poll() is None, self.process.stderr_text()[-3000:]
            time.sleep(0.05)

    def wait_all_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while http_status(self.origin + "/readyz") != 200:
            assert time.monotonic() < deadline, "the cluster's shards did not all get ready"
            assert self.process.proc.poll() is None, self.process.stderr_text()[-3000:]
            time.sleep(0.05)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """``browser_client_app:app`` on a 2-shard cluster, shared by the module's tests."""
    process = ClusterProcess(
        ["browser_client_app:app", "--workers", str(SHARDS), "--port", "0", "--metrics-port", "0"],
        cwd=APPS,
        env={"PYTHONPATH": str(APPS)},
    )
    try:
        process.wait_announced(60)
        served = Cluster(process)
        served.wait_all_ready()
        yield served
    finally:
        process.kill()


# -- the browser -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chromium(cluster: Cluster) -> Iterator[Browser]:
    """One Chromium for the module (started after the cluster, so that both boot at once
    would not be what a slow machine times out on)."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium")
    driver: Playwright
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


SETUP_JS = """
async ([modulePath, recorded]) => {
  const mod = await import(modulePath);
  window.socketspec = mod;
  window.clients = {};
  window.seen = [];
  window.refreshes = {};
  // Only the latest connection opened under a name is recorded: one closed for landing
  // on the wrong shard says nothing more.
  window.latest = {};
  window.record = (name, client) => {
    window.latest[name] = client;
    for (const event of recorded) {
      client.on(event, (payload) => {
        if (window.latest[name] !== client) return;
        window.seen.push({client: name, event, payload, at: Date.now() / 1000});
      });
    }
  };
  return Object.keys(mod).sort();
}
"""

# Opens client `name` (listeners on before the first frame), optionally until it is served by
# `shard` (or by any shard but `notShard`): the others are closed. Returns its whoami.
CONNECT_JS = """
async ({name, url, token, refreshToken, reconnect, shard, notShard}) => {
  const options = {token, reconnect: reconnect || {initial: 0.1, maximum: 1, jitter: 0.5}};
  if (refreshToken) {
    options.refreshToken = () => {
      window.refreshes[name] = (window.refreshes[name] || 0) + 1;
      return refreshToken;
    };
  }
  for (let attempt = 0; attempt < 100; attempt++) {
    const client = new window.socketspec.Client(url, options);
    window.record(name, client);
    await client.open();
    const me = await client.call("whoami", {});
    const wanted = (shard === null || me.shard === shard)
      && (notShard === null || me.shard !== notShard);
    if (wanted) {
      window.clients[name] = client;
      return me;
    }
    window.latest[name] = null;
    window.seen = window.seen.filter((entry) => entry.client !== name);
    client.close();
  }
  throw new Error(`100 connections did not land where wanted (shard ${shard}, not ${notShard})`);
}
"""

# A call's outcome: {ok: true, value} or {ok: false, code, name, isError, message}.
CALL_JS = """
async ([name, event, payload]) => {
  try {
    return {ok: true, value: await window.clients[name].call(event, payload)};
  } catch (error) {
    return {
      ok: false,
      isError: error instanceof window.socketspec.SocketSpecError,
      name: error.name,
      code: error.code,
      message: String(error.message),
    };
  }
}
"""


@dataclass
class ClientPage:
    """A browser context and page of the cluster's origin with the client module loaded."""

    page: Page
    cluster: Cluster
    exports: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def load(self) -> None:
        response = self.page.goto(self.cluster.origin + "/healthz")
        assert response is not None and response.status == 200, response
        self.exports = self.page.evaluate(SETUP_JS, [CLIENT_MODULE, RECORDED])

    def connect(
        self,
        name: str,
        token: str,
        *,
        refresh_token: str | None = None,
        reconnect: dict[str, float] | None = None,
        shard: int | None = None,
        not_shard: int | None = None,
    ) -> dict[str, Any]:
        """Open client ``name`` (``reconnect``: the client's backoff option); its ``whoami``
        answer (shard, pid, connection id)."""
        me: dict[str, Any] = self.page.evaluate(
            CONNECT_JS,
            {
                "name": name,
                "url": self.cluster.ws_url,
                "token": token,
                "refreshToken": refresh_token,
                "reconnect": reconnect,
                "shard": shard,
                "notShard": not_shard,
            },
        )
        return me

    def call(self, name: str, event: str, payload: Any) -> dict[str, Any]:
        outcome: dict[str, Any] = self.page.evaluate(CALL_JS, [name, event, payload])
        return outcome

    def run(self, expression: str, arg: Any = None) -> Any:
        return self.page.evaluate(expression, arg)

    def wait_until(self, expression: str, arg: Any = None, timeout_ms: int = TIMEOUT_MS) -> None:
        """Wait until the JS function ``expression`` (given ``arg``) returns something truthy."""
        self.page.wait_for_function(expression, arg=arg, timeout=timeout_ms)

    def seen(self, name: str, event: str | None = None) -> list[dict[str, Any]]:
        """What client ``name`` recorded (of ``event`` only, when given), in order."""
        entries: list[dict[str, Any]] = self.page.evaluate(
            "([name, event]) => window.seen.filter("
            "(e) => e.client === name && (event === null || e.event === event))",
            [name, event],
        )
        return entries


@dataclass
class Pages:
    """Opens client pages, each in its own browser context, closed at the test's end."""

    browser: Browser
    cluster: Cluster
    out_dir: Path
    opened: list[ClientPage] = field(default_factory=list)

    def open(self) -> ClientPage:
        context = self.browser.new_context()
        context.set_default_timeout(TIMEOUT_MS)
        page = context.new_page()
        client_page = ClientPage(page, self.cluster)
        page.on("pageerror", lambda error: client_page.errors.append(str(error)))
        self.opened.append(client_page)
        client_page.load()
        return client_page

    def close(self) -> None:
        for client_page in self.opened:
            client_page.page.context.close()


@pytest.fixture
def pages(chromium: Browser, cluster: Cluster, tmp_path: Path) -> Iterator[Pages]:
    opened = Pages(chromium, cluster, tmp_path)
    try:
        yield opened
    finally:
        opened.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """On a failed test that drove client pages, save what each page looked like."""
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" or not report.failed:
        return
    opened = getattr(item, "funcargs", {}).get("pages")
    if not isinstance(opened, Pages):
        return
    for n, client_page in enumerate(opened.opened):
        shot = opened.out_dir / f"failure-{n}.png"
        try:
            client_page.page.screenshot(path=str(shot), full_page=True)
            (opened.out_dir / f"failure-{n}.html").write_text(client_page.page.content())
            seen = client_page.page.evaluate("JSON.stringify(window.seen || [])")
        except Exception as err:  # the page or the browser may be what failed
            report.sections.append((f"client page {n}", f"could not save it: {err!r}"))
            continue
        saved = f"{shot}\nerrors: {client_page.errors}\nseen: {seen[-3000:]}"
        report.sections.append((f"client page {n}", saved))
