"""The browser client (clients/js) built with the pinned TypeScript, run by node against a
real shard over real sockets.

``make js-deps`` installs TypeScript and terser into ``.cache/jsclient``. The test compiles
the client, checks that the minified copy the package ships is the one this source gives, and
runs ``js_client_check.mjs`` (beside this file) with node's WebSocket: acks, errors, a
timeout, a broadcast, a cut socket with a call in flight and sends queued offline, recovery
of the same session with every missed message once, heartbeats, a token refresh, a call
given up while it waited offline (never sent), and a failover to a second shard that refuses
the recovery token (the calls written before the cut reject with ``SESSION_LOST`` instead of
running again there; what was queued is sent), and the
wire observer (``onFrame``) with the raw escape hatch (``sendRaw``) the docs page uses.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import jwt
import pytest
from pydantic import BaseModel

from socketspec import Connection, Recovery, Room, SessionConfig, SocketApp
from socketspec.security.auth import JWTAuth
from socketspec.server.config import ServerConfig
from socketspec.server.shard import Shard

ROOT = Path(__file__).resolve().parents[3]
CLIENT = ROOT / "clients" / "js"
TOOLS = ROOT / ".cache" / "jsclient" / "node_modules" / ".bin"
SHIPPED = ROOT / "src" / "socketspec" / "apidocs" / "static" / "socketspec.js"
SCRIPT = Path(__file__).with_name("js_client_check.mjs")
SECRET = "js-client-test-secret-0123456789abcdef"
CLUSTER_TESTS = ROOT / "tests" / "integration" / "cluster"
if str(CLUSTER_TESTS) not in sys.path:
    sys.path.insert(0, str(CLUSTER_TESTS))

from clusterkit import ClusterProcess  # noqa: E402

GZIP_GOAL = 8 * 1024


class Target(BaseModel):
    room: str


class Say(BaseModel):
    room: str
    n: int


class Slow(BaseModel):
    seconds: float


def make_app(recovery_secret: str = SECRET) -> SocketApp:
    app = SocketApp(
        auth=JWTAuth(SECRET),
        rooms=[Room("lobby", history_size=100)],
        recovery=Recovery(secret=recovery_secret),
        session=SessionConfig(
            heartbeat_interval=0.2, heartbeat_timeout=1.0, token_refresh_window=3.0
        ),
    )
    runs = {"slow": 0, "tally": 0}

    @app.on("echo")
    async def echo(conn: Connection, payload: dict[str, Any]) -> dict[str, Any]:
        return payload

    @app.on("join")
    async def join(conn: Connection, body: Target) -> dict[str, str]:
        await app.rooms.join(conn, body.room)
        return {"joined": body.room}

    @app.on("say")
    async def say(conn: Connection, body: Say) -> dict[str, int]:
        await app.rooms.broadcast(body.room, "said", {"n": body.n})
        return {"n": body.n}

    @app.on("slow")
    async def slow(conn: Connection, body: Slow) -> dict[str, int]:
        runs["slow"] += 1
        await asyncio.sleep(body.seconds)
        return {"slept": runs["slow"]}

    @app.on("tally")
    async def tally(conn: Connection, payload: dict[str, Any]) -> dict[str, int]:
        runs["tally"] += 1
        return {"tally": runs["tally"]}

    @app.on("runs")
    async def count(conn: Connection, payload: dict[str, Any]) -> dict[str, int]:
        return {"runs": runs["slow"], "tally": runs["tally"]}

    return app


def _tools() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node not found: install Node.js, then run `make js-deps`")
    if not (TOOLS / "tsc").is_file() or not (TOOLS / "terser").is_file():
        pytest.fail(
            f"TypeScript and terser are not installed in {TOOLS.parent}: run `make js-deps`"
        )
    return node


def _run(*args: str | Path) -> None:
    done = subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, f"{args[0]} failed:\n{done.stdout}\n{done.stderr}"


def _get(url: str) -> tuple[str, bytes]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return str(response.headers["content-type"]), bytes(response.read())


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The client compiled by tsc into a temporary dist/ (the source tree is left alone)."""
    _tools()
    dist = tmp_path_factory.mktemp("dist")
    _run(TOOLS / "tsc", "-p", CLIENT, "--outDir", dist)
    (dist / "package.json").write_text('{"type": "module"}', encoding="utf-8")
    return dist


def test_the_shipped_minified_client_is_built_from_this_source(built: Path, tmp_path: Path) -> None:
    version = json.loads((CLIENT / "package.json").read_text(encoding="utf-8"))["version"]
    fresh = tmp_path / "socketspec.js"
    _run(
        TOOLS / "terser",
        built / "index.js",
        "--module",
        "--compress",
        "--mangle",
        "--comments",
        "false",
        "--preamble",
        f"/* socketspec-client {version} */",
        "--output",
        fresh,
    )
    assert SHIPPED.read_text(encoding="utf-8") == fresh.read_text(encoding="utf-8"), (
        f"{SHIPPED} is stale: run `make js-client` and commit it"
    )
    assert (built / "index.d.ts").is_file()


async def test_the_client_talks_recovers_and_refreshes_against_a_shard(built: Path) -> None:
    node = _tools()
    shard = Shard(
        make_app(), ServerConfig(host="127.0.0.1", port=0, graceful_timeout=2.0, close_timeout=2.0)
    )
    other = Shard(
        make_app(recovery_secret=SECRET[::-1]),
        ServerConfig(host="127.0.0.1", port=0, graceful_timeout=2.0, close_timeout=2.0),
    )
    await shard.start()
    await other.start()
    now = int(time.time())
    short = jwt.encode({"sub": "alice", "exp": now + 4}, SECRET, algorithm="HS256")
    long = jwt.encode({"sub": "alice", "exp": now + 3600}, SECRET, algorithm="HS256")
    try:
        process = await asyncio.create_subprocess_exec(
            node,
            "--experimental-websocket",
            "--no-warnings",
            str(SCRIPT),
            (built / "index.js").as_uri(),
            f"ws://127.0.0.1:{shard.port}/ws",
            short,
            long,
            f"ws://127.0.0.1:{other.port}/ws",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    finally:
        await shard.drain()
        await other.drain()
    assert process.returncode == 0, f"the client script failed:\n{stderr.decode()}"
    seen = json.loads(stdout.decode().strip().splitlines()[-1])

    assert seen["client_class"] is True
    # min(maximum, initial * 2**n) seconds, the fraction jitter of it random.
    assert seen["backoff_ms"] == [500, 1000, 3000, 10000]
    assert seen["echo"] == {"x": 1}
    assert seen["validation"] == "VALIDATION_ERROR"
    assert seen["unknown"] == "UNKNOWN_EVENT"
    assert seen["timeout"] == "TIMEOUT"
    assert "off_listener_ran" not in seen
    # The cut: one reconnection, the same session, every message once and in order.
    assert seen["sockets"] == 2
    assert seen["same_conn_id"] is True
    assert seen["recovered"] is True
    assert seen["missed"] == {}
    assert seen["said"] == [1, 2, 3, 4]
    assert seen["once_count"] == 1
    assert seen["positions"] == ["lobby"]
    # The call in flight was resent with its ack id and answered from the stored reply.
    assert seen["resent_calls"] == 1
    assert seen["in_flight"] == {"slept": 2}
    assert seen["runs"] == 2
    assert seen["queued"] == {"queued": True}
    assert seen["offline_full"] == "OFFLINE_QUEUE_FULL"
    # __auth_expiring__ → refreshToken() → __refresh_auth__; pings answered past the old token.
    assert seen["refreshes"] == 1
    assert seen["refreshed_user"] == "alice"
    assert seen["after_expiry"] == {"alive": True}
    # The call that timed out offline left the queue: the one queued after it ran alone.
    assert seen["expired_offline"] == "TIMEOUT"
    assert seen["failover_kept"] == {"tally": 1}
    # The refused token: a fresh session where the written call is not resent, but rejected.
    assert seen["failover_fresh"] is True
    assert seen["failover_recovery_error"] == "RECOVERY_INVALID"
    assert seen["failover_written"] == "SESSION_LOST"
    assert seen["failover_resent"] == 0
    assert seen["failover_runs"] == {"runs": 0, "tally": 1}
    assert seen["state_after_close"] == "closed"
    # onFrame sees every frame both ways as on the wire; sendRaw writes its text as given.
    assert seen["first_in"] == "__connect__"
    assert seen["raw_written"] is True
    assert seen["raw_out"] == ["{not json"]
    assert seen["raw_error"] == "VALIDATION_ERROR"
    assert seen["observed_echo"] == {"seen": True}
    assert seen["observed"]["echo_out"] == [{"event": "echo", "payload": {"seen": True}, "ack": 1}]
    assert seen["observed"]["ack_in"] == [{"event": "__ack__", "ack": 1, "payload": {"seen": True}}]
    assert seen["observed"]["pong_after_ping"] is True
    assert seen["observed_socket_tracked"] is True
    assert seen["closed_while_connecting"] == "CLOSED"
    assert seen["call_after_close"] == "CLOSED"


def test_the_minified_client_is_under_its_size_goal() -> None:
    assert len(gzip.compress(SHIPPED.read_bytes(), 9)) < GZIP_GOAL


async def test_the_shard_serves_the_shipped_client_beside_the_docs_page() -> None:
    shard = Shard(SocketApp(docs=True), ServerConfig(host="127.0.0.1", port=0))
    await shard.start()
    url = f"http://127.0.0.1:{shard.port}/socket-docs/static/socketspec.js"
    try:
        # Read in a thread: the shard answers on this loop.
        kind, body = await asyncio.to_thread(_get, url)
    finally:
        await shard.drain()
    assert kind.startswith("text/javascript")
    assert body == SHIPPED.read_bytes()


def _get_with(url: str, headers: dict[str, str]) -> tuple[int, Any, bytes]:
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers, bytes(response.read())
    except urllib.error.HTTPError as err:
        return err.code, err.headers, bytes(err.read())


def test_a_cluster_serves_the_client_at_the_root_without_docs() -> None:
    """``GET /socketspec.js`` on every shard of a real cluster whose app has no docs."""
    cluster = ClusterProcess(["cluster_echo_app:app", "--workers", "2", "--port", "0"])
    try:
        cluster.wait_announced(60)
        url = f"http://127.0.0.1:{cluster.port}/socketspec.js"
        tags = set()
        for _ in range(12):  # SO_REUSEPORT spreads the connections over both shards
            status, headers, body = _get_with(url, {})
            assert status == 200 and body == SHIPPED.read_bytes()
            assert headers["content-type"] == "text/javascript; charset=utf-8"
            assert headers["cache-control"] == "public, max-age=3600"
            tags.add(headers["etag"])
        assert len(tags) == 1  # every shard names the same module the same way
        status, headers, body = _get_with(url, {"If-None-Match": tags.pop()})
        assert (status, body) == (304, b"")
        assert "content-length" not in headers
        assert _get_with(f"http://127.0.0.1:{cluster.port}/socket-docs", {})[0] == 404
    finally:
        cluster.kill()


def test_npm_pack_gives_the_module_its_types_and_a_readme_whose_example_compiles(
    built: Path, tmp_path: Path
) -> None:
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail("npm not found: install Node.js")
    package = tmp_path / "package"
    package.mkdir()
    for name in ("package.json", "README.md"):
        shutil.copy(CLIENT / name, package / name)
    shutil.copytree(built, package / "dist", ignore=shutil.ignore_patterns("package.json"))
    done = subprocess.run(
        [npm, "pack", "--json", "--loglevel=error", "--pack-destination", str(tmp_path)],
        cwd=package,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    files = {entry["path"] for entry in json.loads(done.stdout)[0]["files"]}
    assert files == {"package.json", "README.md", "dist/index.js", "dist/index.d.ts"}

    # The README's TypeScript example type-checks against the packed types, as an app would
    # import them from node_modules, with the module the README generates from examples/chat.py.
    readme = (CLIENT / "README.md").read_text(encoding="utf-8")
    example = readme.split("```ts\n", 1)[1].split("```", 1)[0]
    app = tmp_path / "app"
    shutil.copytree(package, app / "node_modules" / "socketspec-client")
    (app / "example.ts").write_text(example, encoding="utf-8")
    generated = subprocess.run(
        [
            sys.executable,
            "-m",
            "socketspec.cli",
            "export-schema",
            "examples.chat:socket",
            "--format",
            "typescript",
            "--out",
            str(app / "chat-api.ts"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert generated.returncode == 0, generated.stderr
    _run(
        TOOLS / "tsc",
        "--noEmit",
        "--strict",
        "--target",
        "ES2022",
        "--module",
        "ES2022",
        "--moduleResolution",
        "bundler",
        "--lib",
        "ES2022,DOM",
        app / "example.ts",
    )
