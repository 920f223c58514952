"""The links' state tables, their instance sockets and the pipe messages a handover and an
exit use. The links between real shard processes are in tests/integration/cluster."""

from __future__ import annotations

from pathlib import Path

import pytest

from socketspec.cluster.codec import Goodbye, Handover, LinkDecoder, encode
from socketspec.cluster.links import (
    LINK_PHASES,
    OWN_ROOMS,
    LinkManager,
    LinkPhase,
    OwnRooms,
    UnixSocketLink,
    instance_paths,
    socket_path,
)
from socketspec.errors import IllegalTransitionError


class NoHandler:
    def on_message(self, peer: int, generation: int, message: object) -> None: ...

    def on_peer_up(self, peer: int, generation: int) -> None: ...

    def on_peer_down(self, peer: int, generation: int) -> None: ...


def test_every_link_phase_and_own_rooms_state_has_a_row() -> None:
    assert set(LINK_PHASES) == set(LinkPhase)
    assert set(OWN_ROOMS) == set(OwnRooms)
    assert LINK_PHASES[LinkPhase.CLOSED] == frozenset()
    assert OWN_ROOMS[OwnRooms.HANDED_OVER] == frozenset()  # a drained instance stays so


def test_the_handover_and_goodbye_messages_round_trip() -> None:
    decoder = LinkDecoder()
    messages = [Handover(0, 2), Goodbye(1, 4)]
    assert decoder.feed(b"".join(encode(m) for m in messages)) == messages


def test_each_instance_has_its_own_socket_and_they_are_listed_oldest_first(
    tmp_path: Path,
) -> None:
    for generation in (12, 3, 7):
        socket_path(tmp_path, 1, generation).touch()
    socket_path(tmp_path, 2, 5).touch()
    (tmp_path / "shard-1-x.sock").touch()  # not an instance's
    assert instance_paths(tmp_path, 1) == [
        (3, tmp_path / "shard-1-3.sock"),
        (7, tmp_path / "shard-1-7.sock"),
        (12, tmp_path / "shard-1-12.sock"),
    ]
    assert instance_paths(tmp_path, 0) == []


async def test_a_link_moves_only_along_its_table_and_names_the_states(tmp_path: Path) -> None:
    manager = LinkManager(0, 2, 1, tmp_path, NoHandler())
    link = UnixSocketLink(manager)
    link.peer = 1
    assert link.move(LinkPhase.RETIRED) is LinkPhase.LIVE
    with pytest.raises(IllegalTransitionError, match="'retired' to 'leaving'"):
        link.move(LinkPhase.LEAVING)
    link.move(LinkPhase.CLOSED)
    with pytest.raises(IllegalTransitionError, match="link to shard 1"):
        link.move(LinkPhase.LIVE)


async def test_an_instance_that_handed_its_rooms_over_never_takes_them_back(
    tmp_path: Path,
) -> None:
    manager = LinkManager(0, 2, 1, tmp_path, NoHandler())
    assert manager.own_rooms is OwnRooms.STARTING and not manager.superseded
    assert manager.home_of_own_rooms  # no predecessor serves: nobody else is their home
    manager._move_own_rooms(OwnRooms.HOME)
    manager._move_own_rooms(OwnRooms.HANDED_OVER)
    assert manager.superseded and not manager.home_of_own_rooms
    with pytest.raises(IllegalTransitionError, match="'handed_over' to 'home'"):
        manager._move_own_rooms(OwnRooms.HOME)
