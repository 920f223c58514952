"""A separate worker process (the shape of a Celery or RQ task) pushing with ``SyncEmitter``.

``python push_worker.py URL [API_KEY] < plan.json``: the plan is a list of calls, each
``{"call": "broadcast", "args": [...], "kwargs": {...}}``; prints one JSON line with the
result of each, or ``{"error": "<exception class>", "message": ...}`` for one that raised."""

from __future__ import annotations

import json
import sys
from typing import Any

from pydantic import BaseModel

from socketspec import SyncEmitter


class Shipped(BaseModel):
    order_id: int
    carrier: str = "post"


def main() -> None:
    url = sys.argv[1]
    key = sys.argv[2] if len(sys.argv) > 2 else None
    plan = json.load(sys.stdin)
    results: list[Any] = []
    with SyncEmitter(url, api_key=key, timeout=2.0) as emitter:
        for step in plan:
            args = list(step.get("args", []))
            if step.get("model"):
                args[-1] = Shipped(**args[-1])  # payloads may be pydantic models
            try:
                results.append(getattr(emitter, step["call"])(*args, **step.get("kwargs", {})))
            except Exception as exc:
                results.append({"error": type(exc).__name__, "message": str(exc)})
    print(json.dumps(results))


if __name__ == "__main__":
    main()
