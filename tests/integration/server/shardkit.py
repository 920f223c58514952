"""Helpers shared by the server integration tests: the echo app, a liveness probe, and
``socketspec-cluster`` subprocesses."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from socketspec import Connection, SocketApp
from socketspec.client import connect

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
APPS = HERE / "apps"
LISTENING = re.compile(r"listening on (wss?)://127\.0\.0\.1:(\d+)(/\S*)")
CLUSTER = str(Path(sys.executable).with_name("socketspec-cluster"))


class EchoApp(SocketApp):
    """A SocketApp that records why each connection ended (conn id → reason)."""

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        self.disconnects: dict[str, str] = {}
        self.disconnected = asyncio.Event()


def echo_app(**settings: Any) -> EchoApp:
    """``echo`` returns its payload; ``shout`` emits it back as ``shouted``; every
    disconnect reason is recorded in ``app.disconnects``."""
    app = EchoApp(**settings)

    @app.on("echo")
    async def echo(conn: Connection, payload: dict[str, Any]) -> dict[str, Any]:
        return payload

    @app.on("shout")
    async def shout(conn: Connection, payload: dict[str, Any]) -> None:
        await conn.emit("shouted", payload)

    @app.on_disconnect
    async def record(conn: Connection, reason: str) -> None:
        app.disconnects[conn.id] = reason
        app.disconnected.set()

    return app


async def disconnect_reason(app: EchoApp, conn_id: str, timeout: float = 10.0) -> str:
    """The reason the on_disconnect hook got for ``conn_id``, waiting for it if need be."""
    async with asyncio.timeout(timeout):
        while conn_id not in app.disconnects:
            app.disconnected.clear()
            await app.disconnected.wait()
    return app.disconnects[conn_id]


async def assert_serving(port: int, path: str = "/ws", **kw: Any) -> None:
    """A fresh, well-behaved client still gets answers."""
    async with connect(f"ws://127.0.0.1:{port}{path}", open_timeout=10, **kw) as client:
        assert await client.call("echo", {"still": "here"}, timeout=10) == {"still": "here"}


# -- subprocess servers ------------------------------------------------------------------------


class ServerProcess:
    """A ``socketspec-cluster`` subprocess; its stdout is read by a thread (the port line)."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None) -> None:
        full_env = dict(os.environ)
        full_env["PYTHONPATH"] = os.pathsep.join(
            [str(APPS), str(REPO), full_env.get("PYTHONPATH", "")]
        ).rstrip(os.pathsep)
        full_env.update(env or {})
        self.proc = subprocess.Popen(
            [CLUSTER, *args],
            cwd=REPO,
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # its own process group: kill() reaches any children
        )
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self._listening = threading.Event()
        self.port: int | None = None
        self.path = ""
        self._threads = [
            threading.Thread(target=self._pump_stdout, daemon=True),
            threading.Thread(target=self._pump_stderr, daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _pump_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.stdout.append(line)
            found = LISTENING.search(line)
            if found and self.port is None:
                self.port = int(found.group(2))
                self.path = found.group(3)
                self._listening.set()
        self._listening.set()  # EOF: wake a waiter, which sees no port

    def _pump_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line)

    async def listening(self, timeout: float = 20.0) -> int:
        """The port the server announced on stdout (waits for the line)."""
        return await asyncio.to_thread(self.wait_listening, timeout)

    def wait_listening(self, timeout: float = 20.0) -> int:
        ready = self._listening.wait(timeout)
        assert ready and self.port is not None, (
            f"server did not announce its port: rc={self.proc.poll()} "
            f"stdout={self.stdout!r} stderr={''.join(self.stderr)[-2000:]}"
        )
        return self.port

    def terminate(self) -> None:
        self.proc.send_signal(signal.SIGTERM)

    async def wait(self, timeout: float = 20.0) -> int:
        """The exit code (the process must exit within ``timeout``)."""
        return await asyncio.to_thread(self.proc.wait, timeout)

    def stderr_text(self) -> str:
        """All of stderr, once the process has exited."""
        for thread in self._threads:
            thread.join(10)
        return "".join(self.stderr)

    def kill(self) -> None:
        if self.proc.poll() is None:  # not reaped yet, so its group id is still its own
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)
        for thread in self._threads:
            thread.join(5)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
