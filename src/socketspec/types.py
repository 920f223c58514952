"""Type aliases shared across the package.

Owns the names of the basic value types (connection ids, room names, payloads)
and the callable shapes that cross module boundaries. Owns no behaviour.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeAlias

from pydantic import BaseModel

ConnectionId: TypeAlias = str
RoomName: TypeAlias = str
Namespace: TypeAlias = str
EventName: TypeAlias = str
PayloadDict: TypeAlias = dict[str, Any]
AckId: TypeAlias = str | int
# The transport object behind a connection (see ``socketspec.transport.Transport``);
# kept as ``Any`` on the public dataclass so adapters may pass their own socket objects.
RawSocket: TypeAlias = Any
EmitCallable: TypeAlias = Callable[[EventName, "PayloadDict | BaseModel"], Awaitable[None]]
DisconnectCallable: TypeAlias = Callable[[str], Awaitable[None]]
