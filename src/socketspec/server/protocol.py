"""The per-connection asyncio adapter: one ``asyncio.Protocol`` per TCP connection.

Owns the I/O of one connection: the HTTP request head (health answers,
403/404/400/431, the handshake deadline), the upgrade (``websocket.negotiate_upgrade``;
refused with 503/429 when ``caps`` has no slot for it),
admission by the application, the bounded inbound mailbox (reading pauses at
the high-water mark and resumes at the low), handing the transport the bytes
the connection gives it (one write per loop turn; while the transport has
paused, a high-water's worth at a time), the slow-consumer close (4008, with
the kernel left to deliver the close frame) and the timers (handshake deadline,
the bounded wait for the peer's close). What the connection decides (phases,
control frames, the closing handshake, close codes, the outbound queue) is
``websocket.ServerConnection``'s. Together with the application's
``ConnectionRuntime`` it forms the connection actor; the runtime owns the
connection's state. ``EchoProtocol`` is echo mode: messages are sent back as
they complete, bypassing the application.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from prometheus_client import Counter

from socketspec import metrics
from socketspec.errors import CloseCode, ConnectionAuthError, ConnectRejected
from socketspec.handle import ConnectionHandle
from socketspec.metrics import TALLY
from socketspec.push.api import is_api_path
from socketspec.push.service import ApiRequest
from socketspec.server import caps, frames, http, opcodes
from socketspec.server.codec import OVERSIZE, DeflateParams, FrameReader
from socketspec.server.outbound import KERNEL_UNSENT_LIMIT
from socketspec.server.websocket import (
    Ended,
    Message,
    Phase,
    ServerConnection,
    negotiate_upgrade,
)

if TYPE_CHECKING:
    from socketspec.server.shard import ShardContext

logger = logging.getLogger("socketspec.server")


_HTTP_RESPONSES: dict[str, Counter] = {}
# Exposed at 0 from the start, so that a query or an alert on them finds a series.
_REFUSED = {reason: metrics.connections_refused.labels(reason=reason) for reason in caps.REASONS}

MailboxItem = Message


class WebSocketProtocol(asyncio.Protocol):
    """A connection served by the application: messages go through the inbound mailbox."""

    def __init__(self, ctx: ShardContext) -> None:
        self.ctx = ctx
        # What the application gave for the admitted connection; messages go through it.
        self.handle: ConnectionHandle | None = None
        self.ws = ServerConnection(
            ctx.config.max_outbound, self._offer, self._schedule_flush, bounded=self.bounded
        )
        self._transport: asyncio.Transport | None = None
        self._reader: http.RequestHeadReader | None = http.RequestHeadReader()
        # Messages the application could not take yet (every handler slot busy), in order.
        # (A deque only once a message has to wait: an empty deque costs 600 bytes, which
        # an idle connection should not pay.)
        self._mailbox: deque[MailboxItem] | None = None
        self._waiting_for_slot = False
        self._reading_paused = False
        self._timer: asyncio.TimerHandle | None = None
        self._pending: bytes = b""  # bytes read while the application admits the connection
        # A recovering connection's replay waits here for the queue to drain (wait_writable).
        self._writable: asyncio.Future[None] | None = None
        self._address: str | None = None  # the client address holding a slot (server.caps)

    # What differs in echo mode (``EchoProtocol``).
    bounded = True  # max_outbound applies: a slow reader's backlog is closed with 4008

    @property
    def phase(self) -> Phase:
        return self.ws.phase

    @property
    def mailbox_depth(self) -> int:
        return len(self._mailbox) if self._mailbox is not None else 0

    @property
    def opening(self) -> bool:
        """Still in its HTTP handshake or being admitted by the application."""
        return self.ws.phase in (Phase.HTTP, Phase.UPGRADING)

    def _schedule_flush(self) -> None:
        self.ctx.schedule_flush(self)

    # -- asyncio.Protocol --------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = transport  # type: ignore[assignment]
        self._transport.set_write_buffer_limits(  # type: ignore[union-attr]
            high=self.ws.high_water, low=self.ws.low_water
        )
        # Without it the kernel takes megabytes from a stalled reader's connection (loopback
        # send buffers autotune to 4 MiB), and a close frame written after them would wait
        # behind all of it.
        self._set_kernel_unsent_limit(KERNEL_UNSENT_LIMIT)
        self.ctx.track(self)
        self._set_timer(self.ctx.config.handshake_timeout, self._handshake_expired)

    def data_received(self, data: bytes) -> None:
        phase = self.ws.phase
        if phase is Phase.OPEN or phase is Phase.CLOSING:
            ended = self.ws.receive(data)
            if ended is not None:
                self._end(ended)
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
        """The transport's buffer passed its high-water mark: frames wait in the queue."""
        self.ws.pause_writing()

    def resume_writing(self) -> None:
        """The transport drained under its low-water mark: hand it what waits."""
        self.ws.resume_writing()
        self._send_queued()
        self._wake_writer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._wake_writer()
        self._cancel_timer()
        self.ws.lost()
        self.ctx.forget(self)
        if self._address is not None:
            self.ctx.caps.release(self._address)
            self._address = None
        self._mailbox = None
        if self.handle is not None:
            self.ctx.spawn(self.handle.disconnect("connection_lost"))

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
        if self.ws.phase is not Phase.CLOSED:
            self.ws.enter(Phase.CLOSED)

    def _hand_over_to_api(self, head: http.RequestHead) -> None:
        """The publish API reads the body and answers from here on (``push.service``)."""
        transport = self._transport
        assert transport is not None and self.ctx.api is not None
        self._cancel_timer()
        self.ws.enter(Phase.CLOSED)
        self.ctx.forget(self)
        ApiRequest(self.ctx.api, head, transport, self.ctx.spawn).start()

    def _refusal(self, head: http.RequestHead) -> str | None:
        """Why the application refuses this upgrade before it starts (the Origin rule)."""
        return self.ctx.app_required.check_origin(head.header_map)

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
        refusal = self._refusal(head)
        if refusal is not None:
            self._reply(http.text_response(403, f"forbidden: {refusal}"))
            return
        upgrade = negotiate_upgrade(head, compression=ctx.config.compression)
        if isinstance(upgrade, bytes):  # refused: the HTTP response that says why
            self._reply(upgrade)
            return
        transport = self._transport
        assert transport is not None
        address = caps.client_address(transport.get_extra_info("peername"))
        no_slot = ctx.caps.admit(address)
        if no_slot is not None:
            _REFUSED[no_slot.reason].inc()
            self._reply(no_slot.response())
            return
        self._address = address
        transport.write(upgrade.response)
        self._cancel_timer()
        params = upgrade.deflate
        reader = FrameReader(self._soft_limit(), ctx.config.max_message_size, params)
        self._upgraded(head, namespace, reader, params)

    def _soft_limit(self) -> int:
        """Past it a message is refused (``OVERSIZE``) but the connection stays open."""
        return self.ctx.app_required.max_payload_size

    def _upgraded(
        self,
        head: http.RequestHead,
        namespace: str,
        reader: FrameReader,
        params: DeflateParams | None,
    ) -> None:
        """The 101 is sent: the application admits the connection, reading waits for it."""
        self.ws.upgraded(reader, admitting=True)
        self._pending = head.trailing
        transport = self._transport
        assert transport is not None
        transport.pause_reading()
        self.ctx.spawn(self._admit(head, namespace))

    async def _admit(self, head: http.RequestHead, namespace: str) -> None:
        app = self.ctx.app_required
        try:
            handle = await app.accept(self, head.header_map, head.query, namespace=namespace)
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
        if self.ws.phase is not Phase.UPGRADING:  # the peer went away meanwhile
            await handle.disconnect("connection_lost")
            return
        self.handle = handle
        self.ws.enter(Phase.OPEN)
        pending, self._pending = self._pending, b""
        transport = self._transport
        assert transport is not None
        transport.resume_reading()
        if pending:
            self.data_received(pending)

    def _refused(self) -> None:
        """The connection was refused with a close frame: read on for the peer's."""
        if self.ws.phase is not Phase.CLOSING:
            return
        pending, self._pending = self._pending, b""
        if pending:
            self.data_received(pending)

    # -- the end ---------------------------------------------------------------------------------

    def _end(self, ended: Ended) -> None:
        """The connection is over (``websocket`` decided): last frames, then drop TCP."""
        transport = self._transport
        assert transport is not None
        if ended.frames and not transport.is_closing():
            transport.writelines(ended.frames)
        self._cancel_timer()
        transport.close()
        self._notify_app(ended.reason)

    def _fail(self, code: int, reason: str) -> None:
        """Policy close decided here, not by the application."""
        metrics.connection_closes.labels(code=str(int(code))).inc()
        self.close_now(code, reason)
        self._notify_app(reason.replace(" ", "_"))

    def _notify_app(self, reason: str) -> None:
        if self.handle is not None:
            self.ctx.spawn(self.handle.disconnect(reason))

    # -- the inbound mailbox ---------------------------------------------------------------------

    def _offer(self, item: MailboxItem) -> None:
        """Hand a message to the application now, or queue it behind the ones waiting."""
        mailbox = self._mailbox
        if not mailbox and self._deliver(item):
            return
        if mailbox is None:
            mailbox = self._mailbox = deque()
        mailbox.append(item)
        if not self._reading_paused and len(mailbox) >= self.ctx.config.mailbox_high_water:
            self._reading_paused = True
            TALLY.add(metrics.mailbox_full)
            transport = self._transport
            assert transport is not None
            transport.pause_reading()
        self._wait_for_slot()

    def _deliver(self, item: MailboxItem) -> bool:
        handle = self.handle
        assert handle is not None
        if item is OVERSIZE:
            handle.refuse_oversize()
            return True
        return handle.offer(item)  # type: ignore[arg-type]

    def _wait_for_slot(self) -> None:
        if not self._waiting_for_slot and self.handle is not None:
            self._waiting_for_slot = True
            self.handle.when_ready(self._drain)

    def _drain(self) -> None:
        """A handler slot came free: hand over queued messages until the slots run out."""
        self._waiting_for_slot = False
        mailbox = self._mailbox
        if mailbox is None:
            return
        low = self.ctx.config.mailbox_low_water
        while mailbox and self.ws.phase is Phase.OPEN:
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

    def write(self, data: bytes) -> None:
        """Queue one JSON envelope as a text frame; past max_outbound unsent bytes, close 4008."""
        transport = self._transport
        ws = self.ws
        phase = ws.phase
        # While upgrading, the application greets the connection it is admitting.
        if (
            (phase is not Phase.OPEN and phase is not Phase.UPGRADING)
            or transport is None
            or transport.is_closing()
        ):
            return
        if ws.send_message(self.ctx.frames.text(data), len(data)):
            # A burst within one iteration: hand it over in pieces, so that the transport
            # can pause and the rest waits (bounded) in the queue.
            self.flush()

    @property
    def max_outbound(self) -> int:
        return self.ws.max_outbound

    def outbound_backlog(self) -> int:
        """Message bytes written and not yet handed to the transport (what ``max_outbound``
        bounds)."""
        return self.ws.unsent_bytes

    async def wait_writable(self) -> None:
        """Until the next flush or resume (the backlog may have shrunk), or the end."""
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        waiter = self._writable
        if waiter is None or waiter.done():
            # A turn's frames are flushed at its end; queued ones once the transport resumes.
            waiter = self._writable = asyncio.get_running_loop().create_future()
        await waiter

    def _wake_writer(self) -> None:
        waiter = self._writable
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def flush_if_quiet(self) -> None:
        """Flush now unless other connections have frames waiting too. Alone (one client
        waiting for its reply), the reply leaves at once; under load, the flush at the end
        of the turn gathers more replies per connection into one write."""
        if self.ws.turn is not None and self.ctx.quiet():
            self.flush()

    def flush(self) -> None:
        """Send the frames queued during this iteration in one write."""
        ws = self.ws
        if ws.turn is None:
            return
        transport = self._transport
        if transport is None or transport.is_closing():
            ws.discard_turn()
            return
        out = ws.take_turn()
        if not out:  # the transport paused writing: the frames wait their turn
            self._send_queued()
        elif len(out) == 1:
            transport.write(out[0])
        else:
            transport.writelines(out)
        if ws.over_limit:
            self._slow_consumer()
        self._wake_writer()

    def _send_queued(self) -> None:
        """Feed the transport from the queue, a piece at a time, until it pauses again."""
        transport = self._transport
        ws = self.ws
        while transport is not None and not transport.is_closing():
            taken = ws.take_queued()  # empty once paused: writelines calls pause_writing
            if not taken:
                return
            transport.writelines(taken)

    def _slow_consumer(self) -> None:
        """Past max_outbound unsent bytes: drop what waits, so that the 4008 close frame
        follows the transport's high-water bytes at most, then close."""
        dropped = self.ws.queue.drop()
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
        ws = self.ws
        if not ws.closable:
            transport.close()
            return
        upgrading = ws.phase is Phase.UPGRADING
        self.flush()
        if transport.is_closing() or not ws.closable:
            return  # the flush found a slow consumer and closed it
        close = ws.start_closing(code, reason)
        if close is not None:  # nothing waits (or it was just dropped): the close goes next
            transport.write(close)
        self._set_timer(self.ctx.config.close_timeout, self._abort)
        if self._reading_paused or upgrading:
            # To read the peer's close frame.
            self._resume_reading_for_close()

    def _resume_reading_for_close(self) -> None:
        transport = self._transport
        assert transport is not None
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


class EchoProtocol(WebSocketProtocol):
    """Echo mode (no application): every message is sent back as it completes.

    No application admits the connection or bounds its queue: a peer that sends
    faster than it reads is read no further until its answers drain. Replies are
    compressed when the client negotiated permessage-deflate (application messages
    go uncompressed, so that a broadcast is framed once).
    """

    bounded = False

    def __init__(self, ctx: ShardContext) -> None:
        super().__init__(ctx)
        self._deflater: frames.MessageDeflater | None = None

    def _refusal(self, head: http.RequestHead) -> str | None:
        return None

    def _soft_limit(self) -> int:
        return self.ctx.config.max_message_size

    def _upgraded(
        self,
        head: http.RequestHead,
        namespace: str,
        reader: FrameReader,
        params: DeflateParams | None,
    ) -> None:
        if params is not None:
            self._deflater = frames.MessageDeflater(
                params.server_no_context_takeover, params.server_max_window_bits
            )
        self.ws.upgraded(reader, admitting=False)
        if head.trailing:
            self.data_received(head.trailing)

    def _offer(self, message: MailboxItem) -> None:
        """Echo the message back (there is no application to offer it to)."""
        if isinstance(message, str):
            opcode, payload = opcodes.OP_TEXT, message.encode()
        elif isinstance(message, bytes):
            opcode, payload = opcodes.OP_BINARY, message
        else:
            return
        deflater = self._deflater
        if deflater is not None:
            self.ws.send(deflater.frame(opcode, payload))
        else:
            self.ws.send(frames.encode_frame(opcode, payload))

    def pause_writing(self) -> None:
        super().pause_writing()
        if self.ws.phase is Phase.OPEN and self._transport is not None:
            self._transport.pause_reading()

    def resume_writing(self) -> None:
        super().resume_writing()
        transport = self._transport
        if self.ws.phase is Phase.OPEN and transport is not None and not transport.is_closing():
            transport.resume_reading()

    def close_now(self, code: int, reason: str) -> None:
        was_closable = self.ws.closable
        super().close_now(code, reason)
        if was_closable and self.ws.phase is Phase.CLOSING and self._transport is not None:
            # To read the peer's close frame (reading may have paused for the replies).
            self._resume_reading_for_close()


def new_protocol(ctx: ShardContext) -> WebSocketProtocol:
    """The protocol for one accepted connection: the application's, or echo mode's."""
    return WebSocketProtocol(ctx) if ctx.app is not None else EchoProtocol(ctx)
