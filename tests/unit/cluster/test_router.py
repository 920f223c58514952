"""The link router: each message goes to the handler registered for its exact type, and a
message type nobody handles is logged and dropped, never raised into the link."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from socketspec.cluster.codec import (
    Alive,
    Deliver,
    EmitTo,
    ExistsRequest,
    Goodbye,
    Handover,
    Hello,
    HistorySync,
    JoinRequest,
    Kick,
    Leave,
    LinkMessage,
    MembersRequest,
    Positioned,
    Publish,
    Ready,
    RecoverReply,
    RecoverRequest,
    Rejoin,
    Reply,
    Resume,
)
from socketspec.cluster.router import LinkRouter
from socketspec.cluster.store import ClusterRoomStore


def recording_router() -> tuple[LinkRouter, list[tuple[str, int, int, LinkMessage]]]:
    seen: list[tuple[str, int, int, LinkMessage]] = []

    def handler(name: str) -> Any:
        def handle(peer: int, generation: int, message: LinkMessage) -> None:
            seen.append((name, peer, generation, message))

        return handle

    return LinkRouter("shard 0", {Leave: handler("leave"), Kick: handler("kick")}), seen


def test_a_message_goes_to_its_types_handler_with_peer_and_generation() -> None:
    router, seen = recording_router()
    leave, kick = Leave("hall", "c1"), Kick("c2", "bye")
    assert router.dispatch(1, 3, leave)
    assert router.dispatch(2, 5, kick)
    assert seen == [("leave", 1, 3, leave), ("kick", 2, 5, kick)]


def test_an_unrouted_type_is_logged_and_dropped(caplog: pytest.LogCaptureFixture) -> None:
    router, seen = recording_router()
    with caplog.at_level(logging.WARNING, logger="socketspec.cluster"):
        assert not router.dispatch(4, 1, Hello(4, 1))
    assert seen == []
    assert "shard 0: unexpected hello from shard 4" in caplog.text


def test_the_routed_types_are_the_table() -> None:
    router, _ = recording_router()
    assert router.routed == frozenset({Leave, Kick})


def test_the_store_routes_every_room_message_and_no_link_control(tmp_path: Path) -> None:
    # Hello, Handover, Goodbye, Ready and Alive are the links' and the supervisor's own:
    # they never reach the store.
    store = ClusterRoomStore(0, 2, 1, tmp_path)
    assert store.router.routed == frozenset(
        {
            Deliver,
            Publish,
            Reply,
            JoinRequest,
            Leave,
            EmitTo,
            MembersRequest,
            ExistsRequest,
            Rejoin,
            Kick,
            HistorySync,
            RecoverRequest,
            RecoverReply,
            Resume,
            Positioned,
        }
    )
    assert not store.router.routed & {Hello, Handover, Goodbye, Ready, Alive}
