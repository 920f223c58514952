"""Log output: plain text or one JSON object per line, with the shard and request context.

Owns the formatters and the process's logging setup. Every record carries the
shard that wrote it (``-`` for the supervisor); records about a connection or
an event carry ``conn_id``, ``request_id`` and ``event`` (passed as ``extra`` by
the code that logs them), so an error envelope's ``request_id`` finds its log line.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

CONTEXT_FIELDS = ("conn_id", "request_id", "event")


class _ShardFilter(logging.Filter):
    """Stamps every record with this process's shard (``-``: the supervisor)."""

    shard: int | str = "-"

    def filter(self, record: logging.LogRecord) -> bool:
        record.shard = self.shard
        return True


def set_shard(index: int | None) -> None:
    """This process is shard ``index`` (after fork)."""
    _ShardFilter.shard = "-" if index is None else index


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "shard": getattr(record, "shard", None),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


PLAIN_FORMAT = "%(asctime)s %(levelname)s shard=%(shard)s %(name)s: %(message)s"


def configure(level: str, as_json: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_ShardFilter())
    handler.setFormatter(JsonFormatter() if as_json else logging.Formatter(PLAIN_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
