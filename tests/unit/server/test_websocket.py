"""The sans-I/O server connection: phases, control frames, the closing handshake, the queue."""

from __future__ import annotations

import dataclasses
import os
import struct

import pytest

from socketspec.server import frames, http, websocket
from socketspec.server.codec import OVERSIZE, FrameReader
from socketspec.server.opcodes import OP_CLOSE, OP_PING, OP_PONG, OP_TEXT
from socketspec.server.websocket import (
    PHASES,
    Ended,
    Message,
    Phase,
    PhaseError,
    ServerConnection,
    Upgrade,
    negotiate_upgrade,
)

MAX_OUTBOUND = 4096  # the transport's high-water mark is a quarter: 1024 bytes


def client_frame(opcode: int, payload: bytes = b"") -> bytes:
    """One masked, unfragmented client frame (payloads under 126 bytes)."""
    assert len(payload) < 126
    key = os.urandom(4)
    masked = bytes(byte ^ key[index % 4] for index, byte in enumerate(payload))
    return bytes((0x80 | opcode, 0x80 | len(payload))) + key + masked


def client_close(code: int | None) -> bytes:
    return client_frame(OP_CLOSE, b"" if code is None else struct.pack("!H", code))


class Peer:
    """What the connection hands its adapter: messages and flush wake-ups."""

    def __init__(self, bounded: bool = True) -> None:
        self.messages: list[Message] = []
        self.wakes = 0
        self.ws = ServerConnection(MAX_OUTBOUND, self.messages.append, self.wake, bounded=bounded)

    def wake(self) -> None:
        self.wakes += 1

    def open(self) -> ServerConnection:
        self.ws.upgraded(FrameReader(100, 1000), admitting=False)
        return self.ws


def test_the_phase_table_covers_every_phase_and_closed_is_final() -> None:
    assert set(PHASES) == set(Phase)
    assert PHASES[Phase.CLOSED] == frozenset()
    for phase, targets in PHASES.items():
        assert phase not in targets


def test_an_illegal_move_names_both_phases() -> None:
    ws = Peer().open()
    with pytest.raises(PhaseError, match="from open to upgrading"):
        ws.enter(Phase.UPGRADING)
    assert ws.phase is Phase.OPEN


def test_an_admitted_connection_waits_in_upgrading_until_the_application_opens_it() -> None:
    peer = Peer()
    peer.ws.upgraded(FrameReader(100, 1000), admitting=True)
    assert peer.ws.phase is Phase.UPGRADING and peer.ws.closable
    peer.ws.enter(Phase.OPEN)
    assert peer.ws.receive(client_frame(OP_TEXT, b"hi")) is None
    assert peer.messages == ["hi"]


def test_messages_are_delivered_in_order_while_open() -> None:
    peer = Peer()
    ws = peer.open()
    data = (
        client_frame(OP_TEXT, b"one")
        + client_frame(0x2, b"\x02")
        + client_frame(OP_TEXT, b"x" * 101)
    )
    assert ws.receive(data) is None
    assert peer.messages == ["one", b"\x02", OVERSIZE]


def test_a_ping_is_answered_with_a_pong_in_this_turn() -> None:
    peer = Peer()
    ws = peer.open()
    ws.receive(client_frame(OP_PING, b"are you there"))
    assert peer.wakes == 1
    assert ws.take_turn() == [frames.encode_frame(OP_PONG, b"are you there")]
    assert ws.turn is None


def test_the_peers_close_is_answered_with_its_code_after_this_turns_frames() -> None:
    peer = Peer()
    ws = peer.open()
    ws.send_message(frames.text_frame(b"reply"), 5)
    ended = ws.receive(client_close(1001))
    assert ended == Ended(
        [frames.text_frame(b"reply"), frames.close_frame(1001, "")], "client_close"
    )
    assert ws.phase is Phase.CLOSED and ws.turn is None


def test_a_close_without_a_code_is_answered_with_1000() -> None:
    ws = Peer().open()
    ended = ws.receive(client_close(None))
    assert ended is not None and ended.frames == [frames.close_frame(1000, "")]


def test_messages_after_the_peers_close_are_not_read() -> None:
    peer = Peer()
    ws = peer.open()
    ended = ws.receive(client_close(1000) + client_frame(OP_TEXT, b"late"))
    assert ended is not None and peer.messages == []


def test_the_peers_close_while_the_transport_is_paused_drops_what_waits() -> None:
    ws = Peer().open()
    ws.pause_writing()
    ws.send_message(frames.text_frame(b"a" * 50), 50)
    assert ws.take_turn() == []  # queued behind the paused transport
    ws.send_message(frames.text_frame(b"b"), 1)
    ended = ws.receive(client_close(1000))
    assert ended is not None and ended.frames == [frames.close_frame(1000, "")]
    assert len(ws.queue) == 0


def test_a_protocol_failure_sends_its_close_code_and_names_the_reason() -> None:
    ws = Peer().open()
    ended = ws.receive(client_frame(OP_TEXT, b"bad \xff text"))
    assert ended is not None
    assert ended.reason == "invalid_utf8"
    assert ended.frames[-1][2:4] == struct.pack("!H", 1007)
    assert ws.phase is Phase.CLOSED


def test_an_unnamed_protocol_failure_is_a_protocol_error() -> None:
    ws = Peer().open()
    ended = ws.receive(bytes((0x80 | OP_TEXT, 1)) + b"x")  # unmasked
    assert ended is not None and ended.reason == "protocol_error"
    assert ended.frames[-1][2:4] == struct.pack("!H", 1002)


def test_our_close_goes_out_at_once_when_nothing_waits() -> None:
    peer = Peer()
    ws = peer.open()
    assert ws.start_closing(4001, "unauthorized") == frames.close_frame(4001, "unauthorized")
    assert ws.phase is Phase.CLOSING and not ws.closable
    # Messages that cross our close are not read; the peer's close ends the handshake.
    assert ws.receive(client_frame(OP_TEXT, b"crossing")) is None
    assert peer.messages == []
    assert ws.receive(client_close(4001)) == Ended([], "server_close")
    assert ws.phase is Phase.CLOSED


def test_our_close_waits_last_behind_the_queued_frames() -> None:
    ws = Peer().open()
    ws.pause_writing()
    ws.send_message(frames.text_frame(b"last broadcast"), 14)
    assert ws.take_turn() == []
    assert ws.start_closing(1001, "server shutdown") is None
    assert ws.take_queued() == []  # still paused
    ws.resume_writing()
    assert ws.take_queued() == [
        frames.text_frame(b"last broadcast"),
        frames.close_frame(1001, "server shutdown"),
    ]


def test_a_second_close_is_refused_naming_the_phase() -> None:
    ws = Peer().open()
    ws.start_closing(1000, "")
    with pytest.raises(PhaseError, match="from closing to closing"):
        ws.start_closing(1000, "")


def test_a_failure_after_our_close_sends_nothing_more() -> None:
    ws = Peer().open()
    ws.start_closing(1000, "")
    ended = ws.receive(client_frame(OP_TEXT, b"\xff"))
    assert ended == Ended([], "invalid_utf8")


def test_past_max_outbound_queued_bytes_the_slow_consumer_close_is_due() -> None:
    ws = Peer().open()
    ws.pause_writing()
    frame = frames.text_frame(b"x" * 100)
    while not ws.over_limit:
        ws.send_message(frame, 100)
        assert ws.take_turn() == []
    assert ws.queue.queued_bytes > MAX_OUTBOUND


def test_an_unbounded_connection_never_calls_for_the_slow_consumer_close() -> None:
    ws = Peer(bounded=False).open()
    ws.pause_writing()
    for _ in range(100):
        ws.send(frames.text_frame(b"x" * 100))
        ws.take_turn()
    assert ws.queue.queued_bytes > MAX_OUTBOUND and not ws.over_limit


def test_a_turn_past_the_high_water_mark_asks_to_be_handed_over_now() -> None:
    peer = Peer()
    ws = peer.open()
    assert ws.send_message(frames.text_frame(b"x" * 100), 1000) is False
    assert ws.send_message(frames.text_frame(b"x" * 100), 100) is True
    assert peer.wakes == 1  # once per turn
    assert len(ws.take_turn()) == 2


def test_a_lost_connection_is_closed_and_keeps_nothing() -> None:
    ws = Peer().open()
    ws.pause_writing()
    ws.send_message(frames.text_frame(b"x"), 1)
    ws.take_turn()
    ws.send_message(frames.text_frame(b"y"), 1)
    ws.lost()
    assert ws.phase is Phase.CLOSED and ws.turn is None and len(ws.queue) == 0
    ws.lost()  # twice is harmless: connection_lost after our own end


def request_head(extra: str = "", version: str = "13") -> http.RequestHead:
    raw = (
        "GET /ws?x=1 HTTP/1.1\r\nHost: example\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: {version}\r\n"
        f"{extra}\r\n"
    )
    head = http.RequestHeadReader().feed(raw.encode())
    assert isinstance(head, http.RequestHead)
    return head


def test_a_valid_upgrade_gets_the_101_with_the_rfc_accept_key() -> None:
    upgrade = negotiate_upgrade(request_head(), compression=True)
    assert isinstance(upgrade, Upgrade)
    assert upgrade.response.startswith(b"HTTP/1.1 101 ")
    assert b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in upgrade.response  # RFC 6455 section 1.3
    assert upgrade.deflate is None  # the client offered no extension


def test_permessage_deflate_is_negotiated_only_when_compression_is_on() -> None:
    offer = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
    on = negotiate_upgrade(request_head(offer), compression=True)
    assert isinstance(on, Upgrade) and on.deflate is not None
    assert b"permessage-deflate" in on.response
    off = negotiate_upgrade(request_head(offer), compression=False)
    assert isinstance(off, Upgrade) and off.deflate is None
    assert b"permessage-deflate" not in off.response


def test_another_protocol_version_is_refused_with_426_naming_13() -> None:
    refusal = negotiate_upgrade(request_head(version="8"), compression=False)
    assert isinstance(refusal, bytes) and refusal.startswith(b"HTTP/1.1 426 ")
    assert b"sec-websocket-version: 13" in refusal.lower()


def test_a_bad_handshake_is_refused_with_400() -> None:
    head = request_head()
    without_key = [(name, value) for name, value in head.headers if name != b"sec-websocket-key"]
    header_map = {k: v for k, v in head.header_map.items() if k != "sec-websocket-key"}
    broken = dataclasses.replace(head, headers=without_key, header_map=header_map)
    refusal = negotiate_upgrade(broken, compression=False)
    assert isinstance(refusal, bytes) and refusal.startswith(b"HTTP/1.1 400 ")


def raw_head(raw: str) -> http.RequestHead:
    head = http.RequestHeadReader().feed(raw.encode())
    assert isinstance(head, http.RequestHead)
    return head


PLAIN_VARIANTS = [
    "Sec-WebSocket-Protocol: chat, superchat\r\n",
    "Origin: https://example.org\r\nUser-Agent: test\r\n",
    "Sec-WebSocket-Extensions: permessage-deflate\r\n",  # with compression off: ignored
]


@pytest.mark.parametrize("extra", PLAIN_VARIANTS)
def test_the_plain_upgrade_answers_what_wsproto_answers_byte_for_byte(extra: str) -> None:
    head = request_head(extra)
    plain = websocket._plain_upgrade(head, compression=False)
    assert isinstance(plain, Upgrade)
    assert plain == websocket._wsproto_upgrade(head, compression=False)


@pytest.mark.parametrize(
    "connection, upgrade",
    [("keep-alive, Upgrade", "websocket"), ("upgrade", "WebSocket"), ("Upgrade ,x", "WEBSOCKET")],
)
def test_the_plain_upgrade_takes_tokens_and_case_as_wsproto_does(
    connection: str, upgrade: str
) -> None:
    head = raw_head(
        f"GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: {upgrade}\r\nConnection: {connection}\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    plain = websocket._plain_upgrade(head, compression=False)
    assert isinstance(plain, Upgrade)
    assert plain == websocket._wsproto_upgrade(head, compression=False)


@pytest.mark.parametrize(
    "raw",
    [
        # no upgrade token in Connection
        "GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: keep-alive\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        # another protocol in Upgrade
        "GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket, h2c\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        # no key
        "GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n",
    ],
)
def test_what_the_plain_upgrade_does_not_take_wsproto_refuses_with_400(raw: str) -> None:
    head = raw_head(raw)
    assert websocket._plain_upgrade(head, compression=False) is None
    refusal = negotiate_upgrade(head, compression=False)
    assert isinstance(refusal, bytes) and refusal.startswith(b"HTTP/1.1 400 ")


def test_an_extension_offer_with_compression_on_goes_to_wsproto() -> None:
    head = request_head("Sec-WebSocket-Extensions: permessage-deflate\r\n")
    assert websocket._plain_upgrade(head, compression=True) is None
