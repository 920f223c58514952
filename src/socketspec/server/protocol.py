"""The per-connection I/O shell: one ``asyncio.Protocol`` per TCP connection.

Owns the bytes of one connection: the HTTP request head (health answers,
403/404/400/431, the handshake deadline), the upgrade (validated and
negotiated by wsproto; refused with 503/429 when ``caps`` has no slot for it),
the connection's phases, the frame reader (``codec``:
parsing, reassembly within the size limits, inflation), the bounded inbound
mailbox (reading pauses at the high-water mark and resumes at the low), the
outbound path (frames go to the transport while it writes, and wait in the
connection's ``OutboundQueue`` while it has paused at its high-water mark;
past ``max_outbound`` unsent bytes the queue is dropped and the 4008 close
frame follows the transport's few buffered bytes) and the closing handshake
with its bounded wait. Together with the application's
``ConnectionRuntime`` it forms the connection actor; the runtime owns the
connection's state, this class only moves bytes. In echo mode messages are
echoed as they complete, bypassing the application.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections import deque
from collections.abc import Callable
from enum import Enum
from typing import TYPE_CHECKING, Any

from prometheus_client import Counter
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, Request
from wsproto.extensions import Extension, PerMessageDeflate
from wsproto.utilities import RemoteProtocolError

from socketspec import metrics
from socketspec.connection import Connection
from socketspec.errors import CloseCode, ConnectionAuthError, ConnectRejected
from socketspec.metrics import TALLY
from socketspec.push.api import is_api_path
from socketspec.push.service import ApiRequest
from socketspec.server import caps, frames, http, opcodes
from socketspec.server.codec import (
    OVERSIZE,
    DeflateParams,
    Event,
    Failure,
    FrameReader,
    Oversize,
    PeerClose,
    Ping,
)
from socketspec.server.outbound import KERNEL_UNSENT_LIMIT, OutboundQueue, water_marks

if TYPE_CHECKING:
    from socketspec.server.shard import ShardContext

logger = logging.getLogger("socketspec.server")


_HTTP_RESPONSES: dict[str, Counter] = {}
# Exposed at 0 from the start, so that a query or an alert on them finds a series.
_REFUSED = {reason: metrics.connections_refused.labels(reason=reason) for reason in caps.REASONS}


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


# What the on_disconnect hooks are told when the peer broke the protocol.
_CLOSE_REASONS: dict[int, str] = {
    CloseCode.INVALID_UTF8: "invalid_utf8",
    CloseCode.MESSAGE_TOO_BIG: "message_too_big",
}

MailboxItem = str | bytes | Oversize


class WebSocketProtocol(asyncio.Protocol):
    def __init__(self, ctx: ShardContext) -> None:
        self.ctx = ctx
        self.phase = Phase.HTTP
        self.conn: Connection | None = None
        self._transport: asyncio.Transport | None = None
        self._reader: http.RequestHeadReader | None = http.RequestHeadReader()
        self._frames: FrameReader | None = None
        # Echo mode compresses its replies when the client negotiated permessage-deflate;
        # application messages go uncompressed, so that a broadcast is framed once.
        self._deflater: frames.MessageDeflater | None = None
        # Messages the application could not take yet (every handler slot busy), in order.
        self._mailbox: deque[MailboxItem] = deque()
        self._waiting_for_slot = False
        self._reading_paused = False
        # Frames written during this loop iteration, sent in one write when the shard
        # flushes (see ShardContext.flush_writes): a broadcast burst or a batch of replies
        # costs one system call per connection, not one per frame.
        self._out: list[bytes] | None = None
        self._out_messages = 0
        self._out_bytes = 0
        high, low = water_marks(ctx.config.max_outbound)
        self._water_marks = (high, low)
        # Frames the transport may not have yet: it paused writing past its high-water mark.
        self._queue = OutboundQueue(chunk=high)
        self._timer: asyncio.TimerHandle | None = None
        self._pending: bytes = b""  # bytes read while the application admits the connection
        self._address: str | None = None  # the client address holding a slot (server.caps)

    # -- phase -----------------------------------------------------------------------------------

    def _enter(self, phase: Phase) -> None:
        if phase not in PHASES[self.phase]:
            raise RuntimeError(f"connection cannot move from {self.phase.value} to {phase.value}")
        self.phase = phase

    @property
    def mailbox_depth(self) -> int:
        return len(self._mailbox)

    @property
    def opening(self) -> bool:
        """Still in its HTTP handshake or being admitted by the application."""
        return self.phase in (Phase.HTTP, Phase.UPGRADING)

    # -- asyncio.Protocol --------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = transport  # type: ignore[assignment]
        high, low = self._water_marks
        self._transport.set_write_buffer_limits(high=high, low=low)  # type: ignore[union-attr]
        # Without it the kernel takes megabytes from a stalled reader's connection (loopback
        # send buffers autotune to 4 MiB), and a close frame written after them would wait
        # behind all of it.
        self._set_kernel_unsent_limit(KERNEL_UNSENT_LIMIT)
        self.ctx.track(self)
        self._set_timer(self.ctx.config.handshake_timeout, self._handshake_expired)

    def data_received(self, data: bytes) -> None:
        phase = self.phase
        if phase is Phase.OPEN or phase is Phase.CLOSING:
            reader = self._frames
            assert reader is not None
            events = reader.feed(data)
            if events:
                self._on_frames(events)
        elif phase is Phase.HTTP:
            head_reader = self._reader
            assert head_reader is not None
            head = head_reader.feed(data)
            if isinstance(head, http.HeadError):
                self._reply(http.text_response(head.status, head.reason))
            elif head is not None:
                self._reader = None
                self._on_request(head)
        elif phase is Phase.UPGRADING:
            self._pending += data

    def eof_received(self) -> bool | None:
        return None  # close our side too

    def pause_writing(self) -> None:
        """The transport's buffer passed its high-water mark: frames wait in our queue."""
        self._queue.pause()
        if self.ctx.app is None and self.phase is Phase.OPEN and self._transport is not None:
            # Echo mode answers every message: a peer that sends faster than it reads is
            # read no further until its answers drain (no application queue to bound).
            self._transport.pause_reading()

    def resume_writing(self) -> None:
        """The transport drained under its low-water mark: hand it what waits."""
        self._queue.resume()
        self._send_queued()
        transport = self._transport
        if (
            self.ctx.app is None
            and self.phase is Phase.OPEN
            and transport is not None
            and not transport.is_closing()
        ):
            transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
        if self.phase is not Phase.CLOSED:
            self._enter(Phase.CLOSED)
        self.ctx.forget(self)
        if self._address is not None:
            self.ctx.caps.release(self._address)
            self._address = None
        self._mailbox.clear()
        self._queue.drop()
        self._out = None
        if self.conn is not None:
            self.ctx.spawn(self.ctx.app_required.handle_disconnect(self.conn, "connection_lost"))

    # -- HTTP ------------------------------------------------------------------------------------

    def _reply(self, response: bytes) -> None:
        """Answer a plain HTTP request and close."""
        transport = self._transport
        assert transport is not None
        self._cancel_timer()
        # Every response here is ours and starts "HTTP/1.1 NNN".
        status = response[9:12].decode("ascii")
        counter = _HTTP_RESPONSES.get(status)
        if counter is None:
            counter = _HTTP_RESPONSES[status] = metrics.http_responses.labels(status=status)
        counter.inc()
        transport.write(response)
        transport.close()
        if self.phase is not Phase.CLOSED:
            self._enter(Phase.CLOSED)

    def _hand_over_to_api(self, head: http.RequestHead) -> None:
        """The publish API reads the body and answers from here on (``push.service``)."""
        transport = self._transport
        assert transport is not None and self.ctx.api is not None
        self._cancel_timer()
        self._enter(Phase.CLOSED)
        self.ctx.forget(self)
        ApiRequest(self.ctx.api, head, transport, self.ctx.spawn).start()

    def _on_request(self, head: http.RequestHead) -> None:
        ctx = self.ctx
        if ctx.api is not None and is_api_path(head.path):
            self._hand_over_to_api(head)
            return
        if not head.is_websocket_upgrade:
            self._reply(ctx.http_response(head))
            return
        namespace = ctx.namespace_for(head.path)
        if namespace is None:
            self._reply(http.text_response(404, f"no WebSocket endpoint at {head.path}"))
            return
        if ctx.app is not None:
            refusal = ctx.app.check_origin(head.header_map)
            if refusal is not None:
                self._reply(http.text_response(403, f"forbidden: {refusal}"))
                return
        if head.header_map.get("sec-websocket-version") != "13":
            # RFC 6455 section 4.4: name the version this server speaks.
            self._reply(
                http.response(
                    426,
                    b"unsupported WebSocket version; this server speaks 13\n",
                    extra=[(b"sec-websocket-version", b"13")],
                )
            )
            return
        # wsproto validates the upgrade and negotiates extensions; after the 101 the
        # connection's frames are this module's and the codec's.
        ws = WSConnection(ConnectionType.SERVER)
        try:
            ws.initiate_upgrade_connection(head.headers, head.target)
            request = next((e for e in ws.events() if isinstance(e, Request)), None)
        except RemoteProtocolError as exc:
            self._reply(http.text_response(400, f"bad WebSocket handshake: {exc}"))
            return
        if request is None:
            self._reply(http.text_response(400, "bad WebSocket handshake"))
            return
        config = ctx.config
        extensions: list[Extension] = []
        deflate = PerMessageDeflate() if config.compression else None
        if deflate is not None:
            extensions.append(deflate)
        transport = self._transport
        assert transport is not None
        address = caps.client_address(transport.get_extra_info("peername"))
        no_slot = ctx.caps.admit(address)
        if no_slot is not None:
            _REFUSED[no_slot.reason].inc()
            self._reply(no_slot.response())
            return
        self._address = address
        transport.write(ws.send(AcceptConnection(extensions=extensions)))
        self._cancel_timer()
        soft = ctx.app.max_payload_size if ctx.app is not None else config.max_message_size
        params = None
        if deflate is not None and deflate.enabled():
            params = DeflateParams(
                client_no_context_takeover=deflate.client_no_context_takeover,
                client_max_window_bits=deflate.client_max_window_bits,
                server_no_context_takeover=deflate.server_no_context_takeover,
                server_max_window_bits=deflate.server_max_window_bits,
            )
        self._frames = FrameReader(soft, config.max_message_size, params)
        if ctx.app is None:  # echo mode: no application to admit the connection
            if params is not None:
                self._deflater = frames.MessageDeflater(
                    params.server_no_context_takeover, params.server_max_window_bits
                )
            self._enter(Phase.OPEN)
            if head.trailing:
                self.data_received(head.trailing)
            return
        self._enter(Phase.UPGRADING)
        self._pending = head.trailing
        transport.pause_reading()
        ctx.spawn(self._admit(head, namespace))

    async def _admit(self, head: http.RequestHead, namespace: str) -> None:
        app = self.ctx.app_required
        try:
            conn = await app.handle_connect(self, head.header_map, head.query, namespace=namespace)
        except ConnectionAuthError:
            # AUTH_ERROR was sent and close(4001) called by the application; read on
            # only to complete the closing handshake.
            self._refused()
            return
        except ConnectRejected as exc:
            self.close_now(CloseCode.PROTOCOL_ERROR, str(exc))
            self._refused()
            return
        except Exception:
            logger.exception("connect failed")
            self.close_now(CloseCode.INTERNAL_ERROR, "internal error")
            self._refused()
            return
        if self.phase is not Phase.UPGRADING:  # the peer went away meanwhile
            await app.handle_disconnect(conn, "connection_lost")
            return
        self.conn = conn
        self._enter(Phase.OPEN)
        pending, self._pending = self._pending, b""
        transport = self._transport
        assert transport is not None
        transport.resume_reading()
        if pending:
            self.data_received(pending)

    def _refused(self) -> None:
        """The connection was refused with a close frame: read on for the peer's."""
        if self.phase is not Phase.CLOSING:
            return
        pending, self._pending = self._pending, b""
        if pending:
            self.data_received(pending)

    # -- WebSocket -------------------------------------------------------------------------------

    def _on_frames(self, events: list[Event]) -> None:
        app = self.ctx.app
        received = 0
        size = 0
        for event in events:
            kind = type(event)
            if kind is str or kind is bytes or event is OVERSIZE:
                received += 1
                if event is not OVERSIZE:
                    size += len(event)  # type: ignore[arg-type]
                if self.phase is not Phase.OPEN:
                    continue  # after our close frame, messages are not read
                if app is None:
                    self._echo(event)
                elif self.conn is not None:
                    self._offer(event)  # type: ignore[arg-type]
            elif kind is Ping:
                if self.phase is Phase.OPEN:
                    self._write_raw(frames.encode_frame(opcodes.OP_PONG, event.payload))  # type: ignore[union-attr]
            elif kind is PeerClose:
                self._on_peer_close(event)  # type: ignore[arg-type]
                break
            elif kind is Failure:
                self._on_failure(event)  # type: ignore[arg-type]
                break
        if received:
            TALLY.add(metrics.frames_received, received)
            TALLY.add(metrics.bytes_received, size)

    def _echo(self, message: str | bytes | object) -> None:
        if isinstance(message, str):
            opcode, payload = opcodes.OP_TEXT, message.encode()
        elif isinstance(message, bytes):
            opcode, payload = opcodes.OP_BINARY, message
        else:
            return
        deflater = self._deflater
        if deflater is not None:
            self._write_raw(deflater.frame(opcode, payload))
        else:
            self._write_raw(frames.encode_frame(opcode, payload))

    def _on_peer_close(self, event: PeerClose) -> None:
        transport = self._transport
        assert transport is not None
        if self.phase is Phase.OPEN:
            # The peer started the closing handshake: answer it, then close TCP.
            code = event.code if event.code is not None else CloseCode.NORMAL
            self.flush()
            self._queue.drop()  # the peer is leaving: what it has not been sent is moot
            transport.write(frames.close_frame(code, ""))
            reason = "client_close"
        else:
            reason = "server_close"  # the answer to our own close
        self._end(reason)

    def _on_failure(self, failure: Failure) -> None:
        """The peer broke the protocol: send the close code, drop the connection."""
        transport = self._transport
        assert transport is not None
        if self.phase is Phase.OPEN:
            self.flush()
            self._queue.drop()
            transport.write(frames.close_frame(failure.code, failure.reason))
            metrics.connection_closes.labels(code=str(int(failure.code))).inc()
        self._end(_CLOSE_REASONS.get(failure.code, "protocol_error"))

    def _end(self, reason: str) -> None:
        transport = self._transport
        assert transport is not None
        self._cancel_timer()
        transport.close()
        self._enter(Phase.CLOSED)
        self._notify_app(reason)

    def _fail(self, code: int, reason: str) -> None:
        """Policy close decided here, not by the application."""
        metrics.connection_closes.labels(code=str(int(code))).inc()
        self.close_now(code, reason)
        self._notify_app(reason.replace(" ", "_"))

    def _notify_app(self, reason: str) -> None:
        if self.conn is not None:
            self.ctx.spawn(self.ctx.app_required.handle_disconnect(self.conn, reason))

    # -- the inbound mailbox ---------------------------------------------------------------------

    def _offer(self, item: MailboxItem) -> None:
        """Hand a message to the application now, or queue it behind the ones waiting."""
        if not self._mailbox and self._deliver(item):
            return
        mailbox = self._mailbox
        mailbox.append(item)
        if not self._reading_paused and len(mailbox) >= self.ctx.config.mailbox_high_water:
            self._reading_paused = True
            TALLY.add(metrics.mailbox_full)
            transport = self._transport
            assert transport is not None
            transport.pause_reading()
        self._wait_for_slot()

    def _deliver(self, item: MailboxItem) -> bool:
        conn = self.conn
        assert conn is not None
        app = self.ctx.app_required
        if item is OVERSIZE:
            app.refuse_oversize(conn)
            return True
        return app.offer_event(conn, item)  # type: ignore[arg-type]

    def _wait_for_slot(self) -> None:
        if not self._waiting_for_slot and self.conn is not None:
            self._waiting_for_slot = True
            self.ctx.app_required.when_ready(self.conn, self._drain)

    def _drain(self) -> None:
        """A handler slot came free: hand over queued messages until the slots run out."""
        self._waiting_for_slot = False
        mailbox = self._mailbox
        low = self.ctx.config.mailbox_low_water
        while mailbox and self.phase is Phase.OPEN:
            if not self._deliver(mailbox[0]):
                self._wait_for_slot()
                return
            mailbox.popleft()
            if self._reading_paused and len(mailbox) <= low:
                self._reading_paused = False
                transport = self._transport
                if transport is not None and not transport.is_closing():
                    transport.resume_reading()

    # -- outbound: the application's Transport ---------------------------------------------------

    def _write_raw(self, frame: bytes) -> None:
        out = self._out
        if out is None:
            self._out = [frame]
            self.ctx.schedule_flush(self)
        else:
            out.append(frame)

    def write(self, data: bytes) -> None:
        """Queue one JSON envelope as a text frame; past max_outbound unsent bytes, close 4008."""
        transport = self._transport
        phase = self.phase
        # While upgrading, the application greets the connection it is admitting.
        if (
            (phase is not Phase.OPEN and phase is not Phase.UPGRADING)
            or transport is None
            or transport.is_closing()
        ):
            return
        self._write_raw(self.ctx.frames.text(data))
        self._out_messages += 1
        self._out_bytes += len(data)
        if self._out_bytes > self._water_marks[0]:
            # A burst within one iteration: hand it over in pieces, so that the transport
            # can pause and the rest waits (bounded) in the queue.
            self.flush()

    def flush_if_quiet(self) -> None:
        """Flush now unless other connections have frames waiting too. Alone (one client
        waiting for its reply), the reply leaves at once; under load, the flush at the end
        of the turn gathers more replies per connection into one write."""
        if self._out is not None and self.ctx.quiet():
            self.flush()

    def flush(self) -> None:
        """Send the frames queued during this iteration in one write."""
        out = self._out
        if out is None:
            return
        self._out = None
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        queue = self._queue
        if not queue.idle:  # the transport paused writing: the frames wait their turn
            queue.push(out)
            self._send_queued()
        elif len(out) == 1:
            transport.write(out[0])
        else:
            transport.writelines(out)
        if self._out_messages:
            TALLY.add(metrics.frames_sent, self._out_messages)
            TALLY.add(metrics.bytes_sent, self._out_bytes)
            self._out_messages = self._out_bytes = 0
        # Echo mode (no application) stops reading instead (see pause_writing): the
        # limit is for application messages, which a slow reader lets pile up.
        if (
            self.ctx.app is not None
            and self.phase is not Phase.CLOSING
            and queue.over(self.ctx.config.max_outbound)
        ):
            self._slow_consumer()

    def _send_queued(self) -> None:
        """Feed the transport from the queue, a piece at a time, until it pauses again."""
        transport = self._transport
        queue = self._queue
        while transport is not None and not transport.is_closing():
            taken = queue.take()  # empty once paused: writelines calls pause_writing
            if not taken:
                return
            transport.writelines(taken)

    def _slow_consumer(self) -> None:
        """Past max_outbound unsent bytes: drop what waits, so that the 4008 close frame
        follows the transport's high-water bytes at most, then close."""
        dropped = self._queue.drop()
        metrics.slow_consumer_closes.inc()
        metrics.outbound_dropped_frames.inc(dropped.frames)
        metrics.outbound_dropped_bytes.inc(dropped.size)
        self._fail(CloseCode.SLOW_CONSUMER, "slow consumer")
        self._hand_rest_to_kernel()

    def _set_kernel_unsent_limit(self, limit: int) -> None:
        transport = self._transport
        sock = transport.get_extra_info("socket") if transport is not None else None
        if sock is not None and hasattr(socket, "TCP_NOTSENT_LOWAT"):  # Linux, macOS
            with contextlib.suppress(OSError):  # the peer is gone: nothing left to deliver
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NOTSENT_LOWAT, limit)

    def _hand_rest_to_kernel(self) -> None:
        """Let the kernel take what the transport still holds (at most its high-water mark
        and the close frame behind it). The abort at close_timeout throws away only what the
        transport holds, while the kernel delivers what it has, then FIN, whenever the
        client reads again: so the close frame outlives the abort."""
        transport = self._transport
        sock = transport.get_extra_info("socket") if transport is not None else None
        if transport is None or sock is None:
            return
        rest = transport.get_write_buffer_size()
        # Twice: the kernel wakes a writer only once its unsent bytes are under half the limit.
        self._set_kernel_unsent_limit(2 * (KERNEL_UNSENT_LIMIT + rest))
        with contextlib.suppress(OSError):
            # The send buffer too, if it may be short (a slow link's is small): the kernel's
            # accounting counts about twice the payload, and it doubles what SO_SNDBUF asks
            # (capped at net.core.wmem_max).
            needed = 2 * (KERNEL_UNSENT_LIMIT + rest) + 8192
            if sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) < needed:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, needed // 2)

    async def close(self, code: int, reason: str) -> None:
        """The application closes the connection (Transport protocol)."""
        self.close_now(code, reason)

    def close_now(self, code: int, reason: str) -> None:
        """Send our close frame and wait a bounded time for the peer's before dropping TCP."""
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        if self.phase is not Phase.OPEN and self.phase is not Phase.UPGRADING:
            transport.close()
            return
        upgrading = self.phase is Phase.UPGRADING
        self.flush()
        if transport.is_closing() or self.phase not in (Phase.OPEN, Phase.UPGRADING):
            return  # the flush found a slow consumer and closed it
        close = frames.close_frame(code, reason)
        if not self._queue:  # nothing waits (or it was just dropped): the close goes next
            transport.write(close)
        else:
            # Messages still wait for the transport (a drain's last broadcasts): the close
            # frame is the last of them; close_timeout bounds how long they may take.
            self._queue.push([close])
        self._enter(Phase.CLOSING)
        self._set_timer(self.ctx.config.close_timeout, self._abort)
        if self._reading_paused or upgrading or self.ctx.app is None:
            # To read the peer's close frame (echo mode may have paused for its replies).
            transport.resume_reading()
            self._reading_paused = False

    # -- timers ----------------------------------------------------------------------------------

    def _set_timer(self, delay: float, callback: Callable[[], Any]) -> None:
        self._cancel_timer()
        self._timer = self.ctx.loop.call_later(delay, callback)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _handshake_expired(self) -> None:
        """No complete upgrade within the handshake timeout (a stalled or slow client)."""
        TALLY.add(metrics.handshake_timeouts)
        self._abort()

    def _abort(self) -> None:
        self._timer = None
        if self._transport is not None:
            self._transport.abort()
