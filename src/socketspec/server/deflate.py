"""permessage-deflate with bounded inflation.

Owns decompressing client messages without letting a small compressed message
(a deflate bomb) grow memory: output is produced in bounded chunks; past
``keep`` bytes of one message it is discarded (the message will be refused
with ``PAYLOAD_TOO_LARGE`` by the connection, and the inflater keeps its
context in step); past ``hard_limit`` the connection is closed with 1009.
Does not own negotiation (wsproto's ``PerMessageDeflate`` does) or framing.
"""

from __future__ import annotations

import zlib

from wsproto.extensions import PerMessageDeflate
from wsproto.frame_protocol import CloseReason, FrameDecoder, FrameProtocol

_CHUNK = 64 * 1024
_SYNC_TAIL = b"\x00\x00\xff\xff"


class BoundedDeflate(PerMessageDeflate):
    def __init__(self, keep: int, hard_limit: int) -> None:
        super().__init__()
        self._keep = keep
        self._hard_limit = hard_limit
        self._produced = 0  # decompressed bytes of the current message

    def _inflate(self, data: bytes) -> bytes | CloseReason:
        decompressor = self._decompressor
        assert decompressor is not None
        kept: list[bytes] = []
        pending = data
        try:
            while True:
                chunk = decompressor.decompress(pending, _CHUNK)
                room = self._keep - self._produced
                self._produced += len(chunk)
                if self._produced > self._hard_limit:
                    return CloseReason.MESSAGE_TOO_BIG
                if room > 0:
                    kept.append(chunk[:room])
                pending = decompressor.unconsumed_tail
                if not pending and len(chunk) < _CHUNK:
                    break
        except zlib.error:
            return CloseReason.INVALID_FRAME_PAYLOAD_DATA
        return b"".join(kept)

    def frame_inbound_payload_data(
        self, proto: FrameDecoder | FrameProtocol, data: bytes
    ) -> bytes | CloseReason:
        if not self._inbound_compressed or not self._inbound_is_compressible:
            return data
        return self._inflate(bytes(data))

    def frame_inbound_complete(
        self, proto: FrameDecoder | FrameProtocol, fin: bool
    ) -> bytes | CloseReason | None:
        if not fin:
            return None
        if not self._inbound_is_compressible or not self._inbound_compressed:
            self._inbound_compressed = None
            self._produced = 0
            return None
        result = self._inflate(_SYNC_TAIL)
        no_context_takeover = (
            self.server_no_context_takeover if proto.client else self.client_no_context_takeover
        )
        if no_context_takeover:
            self._decompressor = None
        self._inbound_compressed = None
        self._produced = 0
        return result
