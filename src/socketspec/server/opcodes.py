"""The WebSocket frame opcodes (RFC 6455 section 5.2), in one place.

Owns the numbers only: the reader (``codec``) and the writer (``frames``) both
take them from here. Plain ``int`` constants rather than an ``IntEnum``, because
the frame parser compares them once per frame and an enum member costs an
attribute lookup each time. Does not own what a frame means to the connection
(``websocket``).
"""

from __future__ import annotations

from typing import Final

OP_CONTINUATION: Final = 0x0
OP_TEXT: Final = 0x1
OP_BINARY: Final = 0x2
# Opcodes from here up are control frames (section 5.5).
OP_CLOSE: Final = 0x8
OP_PING: Final = 0x9
OP_PONG: Final = 0xA
