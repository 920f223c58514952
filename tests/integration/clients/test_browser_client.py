"""The browser client (the module the package ships) in Debian's Chromium, against a real
2-shard ``socketspec-cluster`` over real sockets: acks and error codes, a broadcast across
shards, a reconnection after the server closed the socket, recovery of every message after
a shard is killed, and a token refresh that outlives the first token. Each page imports the
client from the cluster's own origin, as an app without npm does. A failed test leaves
``failure-<n>.png`` in its tmp_path (see browser_kit.py)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:
    sys.path.insert(0, HERE)

pytest.register_assert_rewrite("browser_kit")
from browser_kit import APP, SHARDS, Cluster, Pages, user_token  # noqa: E402

from socketspec.client import Client, connect  # noqa: E402
from socketspec.cluster.store import home_of  # noqa: E402

pytest_plugins = ["browser_kit"]


def room_homed_on(shard: int, prefix: str) -> str:
    """A history room (``h-*``) whose home is ``shard``."""
    names = (f"h-{prefix}-{i}" for i in range(10_000))
    return next(name for name in names if home_of(name, SHARDS) == shard)


def test_a_call_resolves_with_the_ack_and_rejects_with_the_error_code(pages: Pages) -> None:
    page = pages.open()
    assert {"Client", "SocketSpecError", "connect"} <= set(page.exports)
    page.connect("a", user_token("alice"))

    assert page.call("a", "add", {"a": 2, "b": 3}) == {"ok": True, "value": {"sum": 5}}

    wrong = page.call("a", "add", {"a": "two"})
    assert wrong["ok"] is False
    assert wrong["isError"] is True and wrong["name"] == "SocketSpecError"
    assert wrong["code"] == "VALIDATION_ERROR", wrong

    unknown = page.call("a", "no_such_event", {})
    assert unknown["ok"] is False and unknown["isError"] is True
    assert unknown["code"] == "UNKNOWN_EVENT", unknown
    assert page.errors == []


def test_a_broadcast_reaches_pages_on_both_shards(pages: Pages) -> None:
    first, second = pages.open(), pages.open()
    one = first.connect("a", user_token("alice"))
    # Open connections until the second page is served by the other shard: the broadcast
    # has to cross from one shard to the other.
    other = second.connect("b", user_token("bob"), not_shard=one["shard"])
    assert {one["shard"], other["shard"]} == {0, 1}
    assert one["pid"] != other["pid"]

    room = "h-broadcast"
    for page, name in ((first, "a"), (second, "b")):
        assert page.call(name, "join", {"room": room}) == {"ok": True, "value": {"room": room}}
    assert second.call("b", "say", {"room": room, "n": 7}) == {"ok": True, "value": {"n": 7}}

    for page, name in ((first, "a"), (second, "b")):
        page.wait_until(
            "(name) => window.seen.some((e) => e.client === name && e.event === 'said')", name
        )
        said = page.seen(name, "said")
        assert [entry["payload"] for entry in said] == [{"room": room, "n": 7}]


def test_the_client_reconnects_after_the_server_closed_its_socket(pages: Pages) -> None:
    page = pages.open()
    page.connect("a", user_token("alice"))
    assert [entry["event"] for entry in page.seen("a")] == ["connect"]

    # The handler closes the connection with 1012 (service restart), a code that is retried.
    page.run("() => window.clients.a.emit('kick', {})")
    page.wait_until(
        "() => window.seen.some((e) => e.event === 'reconnect')"
        " && window.clients.a.state === 'open'"
    )
    events = page.seen("a")
    assert [entry["event"] for entry in events] == ["connect", "disconnect", "reconnect"], events
    assert events[1]["payload"] == {"code": APP.SERVICE_RESTART}
    assert page.call("a", "add", {"a": 20, "b": 22}) == {"ok": True, "value": {"sum": 42}}


class Publisher(threading.Thread):
    """Sends ``say`` n = 1, 2, ... to ``room`` from a Python client served by ``shard``, each
    after the previous one was acked, until stopped; ``acked`` holds (n, wall clock time of
    its ack), ``last`` the last acked n."""

    def __init__(self, url: str, room: str, shard: int) -> None:
        super().__init__(daemon=True)
        self.url, self.room, self.shard = url, room, shard
        self.stop = threading.Event()
        self.placed = threading.Event()
        self.last = 0
        self.acked: list[tuple[int, float]] = []
        self.failure: BaseException | None = None

    def run(self) -> None:
        try:
            asyncio.run(self._publish())
        except BaseException as error:  # reported by the test
            self.failure = error
        finally:
            self.placed.set()

    async def _place(self) -> Client:
        for _ in range(100):
            client = await connect(self.url, token=user_token("publisher"), open_timeout=10)
            if client.greeting["shard"] == self.shard:
                return client
            await client.close()
        raise AssertionError(f"100 connections did not land on shard {self.shard}")

    async def _publish(self) -> None:
        client = await self._place()
        self.placed.set()
        try:
            while not self.stop.is_set():
                n = self.last + 1
                assert await client.call("say", {"room": self.room, "n": n}, timeout=20) == {"n": n}
                self.last = n
                self.acked.append((n, time.time()))
                await asyncio.sleep(0.02)  # pacing: a steady stream, not a flood
        finally:
            await client.close()


def test_a_page_recovers_every_message_after_its_shard_is_killed(
    pages: Pages, cluster: Cluster
) -> None:
    page = pages.open()
    # The first retry waits 1 s, so broadcasts are sent while the page is offline.
    me = page.connect("a", user_token("alice"), reconnect={"initial": 1, "jitter": 0})
    killed, survivor = me["shard"], 1 - me["shard"]
    # The room's home (which keeps its history) is the shard that survives.
    room = room_homed_on(survivor, "recovery")
    assert page.call("a", "join", {"room": room})["ok"] is True

    publisher = Publisher(cluster.ws_url, room, survivor)
    publisher.start()
    try:
        assert publisher.placed.wait(30) and publisher.failure is None, publisher.failure
        count_said = "(least) => window.seen.filter((e) => e.event === 'said').length >= least"
        page.wait_until(count_said, 10)

        os.kill(me["pid"], signal.SIGKILL)
        page.wait_until(
            "() => window.seen.some((e) => e.event === 'reconnect')"
            " && window.clients.a.state === 'open'",
            timeout_ms=30_000,
        )
        # Live traffic flows again after the recovery.
        received = len(page.seen("a", "said"))
        page.wait_until(count_said, received + 10, timeout_ms=30_000)
    finally:
        publisher.stop.set()
        publisher.join(30)
    assert publisher.failure is None, publisher.failure
    last = publisher.last
    page.wait_until(
        "(last) => window.seen.some((e) => e.event === 'said' && e.payload.n === last)",
        last,
        timeout_ms=30_000,
    )
    # The publisher is stopped, so nothing more than 1..last can come; a duplicate would
    # already be in the list, which is checked whole.
    numbers = [entry["payload"]["n"] for entry in page.seen("a", "said")]
    assert numbers == list(range(1, last + 1)), numbers
    lifecycle = [entry for entry in page.seen("a") if entry["event"] != "said"]
    assert [entry["event"] for entry in lifecycle] == ["connect", "disconnect", "reconnect"]
    offline = [n for n, at in publisher.acked if lifecycle[1]["at"] < at < lifecycle[2]["at"]]
    assert offline, "no broadcast was sent while the page was offline"
    state = page.run(
        "() => ({recovered: window.clients.a.recovered, missed: window.clients.a.missed,"
        " connId: window.clients.a.connId})"
    )
    assert state == {"recovered": True, "missed": {}, "connId": me["id"]}, state
    after = page.call("a", "whoami", {})
    assert after["ok"] is True and after["value"]["pid"] != me["pid"], after
    # The supervisor replaced the killed shard: the next tests get a whole cluster.
    cluster.wait_ready(killed, {me["pid"]})
    cluster.wait_all_ready()


def test_a_refreshed_token_keeps_the_connection_past_the_first_tokens_expiry(
    pages: Pages,
) -> None:
    page = pages.open()
    lifetime = APP.TOKEN_REFRESH_WINDOW + 1.5
    expires = time.time() + lifetime
    short = user_token("carol", expires_in=lifetime)
    fresh = user_token("carol", expires_in=3600)
    me = page.connect("a", short, refresh_token=fresh)

    # __auth_expiring__ comes TOKEN_REFRESH_WINDOW seconds before exp; the page's
    # refreshToken() answers it with the fresh token.
    page.wait_until("() => window.seen.some((e) => e.event === 'refreshed')")
    refreshed = page.seen("a", "refreshed")
    assert refreshed[0]["payload"]["user_id"] == "carol", refreshed
    assert page.run("() => window.refreshes.a") == 1

    # Past the first token's exp (second-granular) the connection is still the same one.
    page.wait_until("(after) => Date.now() / 1000 > after", int(expires) + 1.5)
    after = page.call("a", "whoami", {})
    assert after["ok"] is True, after
    assert after["value"]["id"] == me["id"] and after["value"]["user"] == "carol"
    events = [entry["event"] for entry in page.seen("a")]
    assert events == ["connect", "refreshed"], events
