"""``cluster_rooms_app`` whose shards take ``BOOT_DELAY`` to boot: the app's startup sleeps
when it runs in a shard (not in the supervisor, which imports the module, and imports it
again on a reload). A test then kills a shard while it boots without racing a boot of a few
milliseconds on a loaded machine. ``socketspec-cluster cluster_slow_boot_app:app``."""

from __future__ import annotations

import os
import time

from cluster_rooms_app import app

__all__ = ["app"]

BOOT_DELAY = 0.3
SUPERVISOR = os.getpid()
_validate = app.startup


def startup() -> None:
    _validate()
    if os.getpid() != SUPERVISOR:
        time.sleep(BOOT_DELAY)


app.startup = startup  # type: ignore[method-assign]
