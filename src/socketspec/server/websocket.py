"""One server WebSocket connection, sans-I/O: its phases, its frames in and out, its close.

Owns what a connection decides between the bytes it reads and the bytes it
writes: the phases (``Phase``, one transition table, ``PHASES``; an illegal move
raises ``PhaseError`` naming both phases), the frame reader (``codec``) and what
its control events ask for (a pong for a ping, the answer to the peer's close,
the close code for a protocol failure), the frames written during one loop turn
(sent in one write), the ``OutboundQueue`` that holds them while the transport
has paused writing and its ``max_outbound`` limit, and the closing handshake
(our close frame goes out next, or last behind the waiting frames).

``negotiate_upgrade`` turns a request head into the 101 (or the refusal).
``receive`` takes bytes, hands each complete message to the ``deliver``
callable and returns ``Ended`` once the connection is over (its last frames and
the reason the application is told); the adapter writes ``Ended.frames`` and
drops TCP. ``take_turn``, ``take_queued`` and ``start_closing`` hand back the
bytes to write. Does not own the socket, timers, reading the HTTP head (``http``),
admission (``caps``, the application), the inbound mailbox (``protocol`` owns those
three) or building frames (``frames``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, Request
from wsproto.extensions import Extension, PerMessageDeflate
from wsproto.utilities import RemoteProtocolError, generate_accept_token

from socketspec import metrics
from socketspec.errors import CloseCode
from socketspec.metrics import TALLY
from socketspec.server import frames, http
from socketspec.server.codec import (
    OVERSIZE,
    DeflateParams,
    Failure,
    FrameReader,
    Oversize,
    PeerClose,
    Ping,
)
from socketspec.server.opcodes import OP_PONG
from socketspec.server.outbound import OutboundQueue, water_marks


class Phase(Enum):
    HTTP = "http"  # reading the request head
    UPGRADING = "upgrading"  # 101 sent, the application is admitting the connection
    OPEN = "open"  # messages flow
    CLOSING = "closing"  # our close frame is sent; waiting (bounded) for the peer's
    CLOSED = "closed"


PHASES: dict[Phase, frozenset[Phase]] = {
    Phase.HTTP: frozenset({Phase.UPGRADING, Phase.OPEN, Phase.CLOSED}),
    Phase.UPGRADING: frozenset({Phase.OPEN, Phase.CLOSING, Phase.CLOSED}),
    Phase.OPEN: frozenset({Phase.CLOSING, Phase.CLOSED}),
    Phase.CLOSING: frozenset({Phase.CLOSED}),
    Phase.CLOSED: frozenset(),
}


class PhaseError(RuntimeError):
    """A move the transition table does not allow."""

    def __init__(self, current: Phase, target: Phase) -> None:
        super().__init__(f"connection cannot move from {current.value} to {target.value}")
        self.current = current
        self.target = target


# What the on_disconnect hooks are told when the peer broke the protocol.
_CLOSE_REASONS: dict[int, str] = {
    CloseCode.INVALID_UTF8: "invalid_utf8",
    CloseCode.MESSAGE_TOO_BIG: "message_too_big",
}

Message = str | bytes | Oversize


@dataclass(frozen=True, slots=True)
class Upgrade:
    """An upgrade wsproto validated: the 101 response to send, the negotiated deflate."""

    response: bytes
    deflate: DeflateParams | None


def negotiate_upgrade(head: http.RequestHead, *, compression: bool) -> Upgrade | bytes:
    """The ``Upgrade`` for a WebSocket request head, or the HTTP response refusing it
    (426 for another protocol version, 400 for a bad handshake). A plain request that
    passes wsproto's checks is answered here (``_plain_upgrade``); wsproto validates the
    rest and negotiates permessage-deflate; the frames after the 101 are this module's."""
    if head.header_map.get("sec-websocket-version") != "13":
        # RFC 6455 section 4.4: name the version this server speaks.
        return http.response(
            426,
            b"unsupported WebSocket version; this server speaks 13\n",
            extra=[(b"sec-websocket-version", b"13")],
        )
    accepted = _plain_upgrade(head, compression=compression)
    if accepted is not None:
        return accepted
    return _wsproto_upgrade(head, compression=compression)


def _wsproto_upgrade(head: http.RequestHead, *, compression: bool) -> Upgrade | bytes:
    """wsproto's validation and permessage-deflate negotiation: the 101, or the refusal."""
    ws = WSConnection(ConnectionType.SERVER)
    try:
        ws.initiate_upgrade_connection(head.headers, head.target)
        request = next((e for e in ws.events() if isinstance(e, Request)), None)
    except RemoteProtocolError as exc:
        return http.text_response(400, f"bad WebSocket handshake: {exc}")
    if request is None:
        return http.text_response(400, "bad WebSocket handshake")
    extensions: list[Extension] = []
    deflate = PerMessageDeflate() if compression else None
    if deflate is not None:
        extensions.append(deflate)
    response = ws.send(AcceptConnection(extensions=extensions))
    params = None
    if deflate is not None and deflate.enabled():  # negotiated by the send above
        params = DeflateParams(
            client_no_context_takeover=deflate.client_no_context_takeover,
            client_max_window_bits=deflate.client_max_window_bits,
            server_no_context_takeover=deflate.server_no_context_takeover,
            server_max_window_bits=deflate.server_max_window_bits,
        )
    return Upgrade(response, params)


def _plain_upgrade(head: http.RequestHead, *, compression: bool) -> Upgrade | None:
    """The common upgrade without wsproto: a request that passes every check wsproto
    makes of a head handed to it (``Connection: upgrade``, ``Upgrade: websocket``, a key,
    a host; the version was checked before; wsproto is given the head as a GET) and asks
    for no extension this server would negotiate, answered with the same 101, byte for
    byte. None for anything else: wsproto then decides, with its own refusals. A second
    parse of the head by wsproto and h11 was a seventh of the cost of opening a
    connection."""
    headers = head.header_map
    key = headers.get("sec-websocket-key")
    if (
        key is None
        or "host" not in headers
        or headers.get("upgrade", "").lower() != "websocket"
        or (compression and "sec-websocket-extensions" in headers)
    ):
        return None
    tokens = headers.get("connection", "").split(",")
    if not any(token.strip().lower() == "upgrade" for token in tokens):
        return None
    return Upgrade(_PLAIN_101 % generate_accept_token(key.encode("latin-1")), None)


_PLAIN_101 = (
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Accept: %s\r\n\r\n"
)


@dataclass(frozen=True, slots=True)
class Ended:
    """The connection is over: write ``frames`` (maybe none), then drop TCP."""

    frames: list[bytes]
    reason: str  # what the application's on_disconnect hooks are told


class ServerConnection:
    """The state of one server connection between its transport and its messages.

    ``deliver`` receives every complete message while the connection is open;
    ``wake`` is called when the first frame of a loop turn is written, so that
    the adapter flushes the turn at its end. ``bounded`` applies ``max_outbound``
    (an echo connection stops reading instead, so its queue cannot grow).
    """

    __slots__ = (
        "_deliver",
        "_turn_bytes",
        "_turn_messages",
        "_wake",
        "bounded",
        "high_water",
        "low_water",
        "max_outbound",
        "phase",
        "queue",
        "reader",
        "turn",
    )

    def __init__(
        self,
        max_outbound: int,
        deliver: Callable[[Message], object],
        wake: Callable[[], object],
        *,
        bounded: bool = True,
    ) -> None:
        self.phase = Phase.HTTP
        self.reader: FrameReader | None = None
        self.max_outbound = max_outbound
        self.bounded = bounded
        self.high_water, self.low_water = water_marks(max_outbound)
        # Frames the transport may not have yet: it paused writing past its high-water mark.
        self.queue = OutboundQueue(chunk=self.high_water)
        self._deliver = deliver
        self._wake = wake
        # Frames written during this loop turn (None: none yet), sent in one write by
        # ``take_turn``.
        self.turn: list[bytes] | None = None
        self._turn_messages = 0
        self._turn_bytes = 0

    # -- phases ----------------------------------------------------------------------------------

    def enter(self, phase: Phase) -> None:
        if phase not in PHASES[self.phase]:
            raise PhaseError(self.phase, phase)
        self.phase = phase

    def upgraded(self, reader: FrameReader, *, admitting: bool) -> None:
        """The 101 is sent: frames are read from now on, once the connection is open
        (at once, or after the application admits it)."""
        self.reader = reader
        self.enter(Phase.UPGRADING if admitting else Phase.OPEN)

    @property
    def closable(self) -> bool:
        """A close frame may still be sent (it has not been yet)."""
        return self.phase is Phase.OPEN or self.phase is Phase.UPGRADING

    # -- inbound ---------------------------------------------------------------------------------

    def receive(self, data: bytes) -> Ended | None:
        """Read frames; messages go to ``deliver`` while open. ``Ended`` once it is over."""
        reader = self.reader
        assert reader is not None
        events = reader.feed(data)
        if not events:
            return None
        deliver = self._deliver
        received = 0
        size = 0
        ended = None
        for event in events:
            kind = type(event)
            if kind is str or kind is bytes or event is OVERSIZE:
                received += 1
                if event is not OVERSIZE:
                    size += len(event)  # type: ignore[arg-type]
                if self.phase is Phase.OPEN:  # after our close frame, messages are not read
                    deliver(event)  # type: ignore[arg-type]
            elif kind is Ping:
                if self.phase is Phase.OPEN:
                    self.send(frames.encode_frame(OP_PONG, event.payload))  # type: ignore[union-attr]
            elif kind is PeerClose:
                ended = self._peer_closed(event)  # type: ignore[arg-type]
                break
            elif kind is Failure:
                ended = self._failed(event)  # type: ignore[arg-type]
                break
        if received:
            TALLY.add(metrics.frames_received, received)
            TALLY.add(metrics.bytes_received, size)
        return ended

    def _peer_closed(self, event: PeerClose) -> Ended:
        if self.phase is Phase.OPEN:
            # The peer started the closing handshake: answer it, then close TCP.
            code = event.code if event.code is not None else CloseCode.NORMAL
            return self._last_words(frames.close_frame(code, ""), "client_close")
        self.enter(Phase.CLOSED)
        return Ended([], "server_close")  # the answer to our own close

    def _failed(self, failure: Failure) -> Ended:
        """The peer broke the protocol: send the close code, drop the connection."""
        reason = _CLOSE_REASONS.get(failure.code, "protocol_error")
        if self.phase is Phase.OPEN:
            metrics.connection_closes.labels(code=str(int(failure.code))).inc()
            return self._last_words(frames.close_frame(failure.code, failure.reason), reason)
        self.enter(Phase.CLOSED)
        return Ended([], reason)

    def _last_words(self, close: bytes, reason: str) -> Ended:
        """This turn's frames (unless the transport has paused: the peer is leaving, what
        it has not been sent is moot) and the close frame."""
        turn = self._take_counted()
        out = turn if turn is not None and self.queue.idle else []
        self.queue.drop()
        out.append(close)
        self.enter(Phase.CLOSED)
        return Ended(out, reason)

    # -- outbound --------------------------------------------------------------------------------

    def send(self, frame: bytes) -> None:
        """Write a frame in this turn (control frames and echoes: not counted as messages)."""
        turn = self.turn
        if turn is None:
            self.turn = [frame]
            self._wake()
        else:
            turn.append(frame)

    def send_message(self, frame: bytes, size: int) -> bool:
        """Write an application message's frame; True once this turn holds more than the
        transport's high-water mark (hand it over now, so that the transport can pause)."""
        turn = self.turn
        if turn is None:
            self.turn = [frame]
            self._wake()
        else:
            turn.append(frame)
        self._turn_messages += 1
        self._turn_bytes += size
        return self._turn_bytes > self.high_water

    def discard_turn(self) -> None:
        """The transport is gone: this turn's frames go nowhere."""
        self.turn = None
        self._turn_messages = self._turn_bytes = 0

    def _take_counted(self) -> list[bytes] | None:
        turn, self.turn = self.turn, None
        if self._turn_messages:
            TALLY.add(metrics.frames_sent, self._turn_messages)
            TALLY.add(metrics.bytes_sent, self._turn_bytes)
            self._turn_messages = self._turn_bytes = 0
        return turn

    def take_turn(self) -> list[bytes]:
        """This turn's frames to write now; none if the transport paused (they wait in
        the queue behind the others: ``take_queued`` hands them over)."""
        turn = self._take_counted()
        if turn is None:
            return []
        if not self.queue.idle:
            self.queue.push(turn)
            return []
        return turn

    def take_queued(self) -> list[bytes]:
        """The next waiting frames, a high-water's worth; none while the transport pauses."""
        return self.queue.take()

    @property
    def unsent_bytes(self) -> int:
        """Message bytes of this turn and of the queue, not yet handed to the transport."""
        return self._turn_bytes + self.queue.queued_bytes

    @property
    def over_limit(self) -> bool:
        """More than ``max_outbound`` bytes wait: the slow-consumer close is due."""
        return (
            self.bounded and self.phase is not Phase.CLOSING and self.queue.over(self.max_outbound)
        )

    def pause_writing(self) -> None:
        self.queue.pause()

    def resume_writing(self) -> None:
        self.queue.resume()

    # -- our close -------------------------------------------------------------------------------

    def start_closing(self, code: int, reason: str) -> bytes | None:
        """Our close frame: returned to write now when nothing waits, else queued last
        behind the waiting frames (a drain's last broadcasts). The connection is closing."""
        if not self.closable:
            raise PhaseError(self.phase, Phase.CLOSING)
        close = frames.close_frame(code, reason)
        self.enter(Phase.CLOSING)
        if not self.queue:
            return close
        self.queue.push([close])
        return None

    def lost(self) -> None:
        """The transport is gone: nothing is sent any more."""
        if self.phase is not Phase.CLOSED:
            self.enter(Phase.CLOSED)
        self.queue.drop()
        self.turn = None
