"""What the examples' tests are given: where an example is served, and by what."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class Served:
    server: str  # "uvicorn" or "cluster"
    ws: str  # the socket's URL, ws://127.0.0.1:PORT/ws
    http: str  # http://127.0.0.1:PORT

    @property
    def has_rest(self) -> bool:
        """The FastAPI app's routes are served under uvicorn only."""
        return self.server == "uvicorn"


Serve = Callable[..., Served]


Serve = Callable[..., Served]
