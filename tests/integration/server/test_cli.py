"""``socketspec-cluster`` on the command line: a bad flag, value or APP is exactly one line
on stderr and exit code 2; ``--port 0`` announces the port it got."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
import websockets
from shardkit import ServerProcess

from socketspec.client import connect

Spawn = Callable[..., ServerProcess]

BAD = {
    "port-banana": ["ss_drain_app:socket", "--port", "banana"],
    "port-out-of-range": ["ss_drain_app:socket", "--port", "70000"],
    "workers-0": ["ss_drain_app:socket", "--workers", "0"],
    "unknown-flag": ["ss_drain_app:socket", "--no-such-flag"],
    "bad-size": ["ss_drain_app:socket", "--max-message-size", "lots"],
    "missing-module": ["no_such_module_for_socketspec:socket"],
    "missing-attribute": ["ss_drain_app:no_such_attribute"],
    "not-an-app-spec": ["ss_drain_app"],
    "duplicate-event": ["ss_duplicate_app:socket"],
    "redis-not-a-redis-url": ["ss_drain_app:socket", "--redis", "http://127.0.0.1:6379"],
    "redis-without-host": ["ss_drain_app:socket", "--redis", "redis://"],
    "redis-node-ttl-0": ["ss_drain_app:socket", "--redis-node-ttl", "0"],
    "redis-node-ttl-banana": ["ss_drain_app:socket", "--redis-node-ttl", "banana"],
    "max-connections-negative": ["ss_drain_app:socket", "--max-connections", "-1"],
    "max-connections-banana": ["ss_drain_app:socket", "--max-connections", "lots"],
    "max-per-ip-fraction": ["ss_drain_app:socket", "--max-per-ip", "1.5"],
    "handshake-timeout-0": ["ss_drain_app:socket", "--handshake-timeout", "0"],
}


@pytest.fixture(scope="module")
def bad_runs() -> dict[str, tuple[int, str]]:
    """Every bad command line, run at once (each is a process start)."""
    servers = {name: ServerProcess(args) for name, args in BAD.items()}
    try:
        results = {}
        for name, server in servers.items():
            code = server.proc.wait(30)
            results[name] = (code, server.stderr_text())
        return results
    finally:
        for server in servers.values():
            server.kill()


@pytest.mark.parametrize("case", BAD.keys())
def test_a_bad_command_line_is_one_line_on_stderr_and_exit_2(
    bad_runs: dict[str, tuple[int, str]], case: str
) -> None:
    code, stderr = bad_runs[case]
    assert code == 2, stderr
    assert stderr.endswith("\n") and stderr.count("\n") == 1, stderr
    assert "error" in stderr.lower()


async def test_the_flags_reach_the_server(spawn_server: Spawn) -> None:
    """--port 0 announces the port it got; --path, --compression and --max-message-size
    are what the served connections get."""
    server = spawn_server(
        "ss_drain_app:socket",
        "--port", "0",
        "--path", "/sock/",
        "--compression",
        "--max-message-size", "64KiB",
    )  # fmt: skip
    port = await server.listening()
    assert port > 0 and server.path == "/sock"
    async with connect(f"ws://127.0.0.1:{port}/sock") as client:
        assert client.greeting["shard"] == 0
        assert await client.call("echo", {"cli": True}) == {"cli": True}
    url = f"ws://127.0.0.1:{port}/sock"
    async with websockets.connect(url, compression="deflate", max_size=None) as ws:
        assert "permessage-deflate" in ws.response.headers.get("Sec-WebSocket-Extensions", "")
        assert json.loads(await ws.recv())["event"] == "__connect__"
        # ~70 KiB once inflated (a few hundred bytes on the wire): over --max-message-size
        await ws.send(json.dumps({"event": "echo", "payload": {"z": "z" * (70 * 1024)}}))
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
    server.terminate()
    assert await server.wait(20) == 0
