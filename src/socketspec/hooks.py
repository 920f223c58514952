"""Lifecycle hooks: on_connect, on_disconnect, on_error, on_room_join, on_room_leave.

Owns the hook lists and how they are run: in registration order, sync or
async, each isolated so that one failing hook is logged and never stops the
others or the connection. Does not decide when hooks run (the runtime and the
room API do).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from typing import Any, Literal

logger = logging.getLogger("socketspec.hooks")

HookName = Literal["on_connect", "on_disconnect", "on_error", "on_room_join", "on_room_leave"]
HOOK_NAMES: tuple[HookName, ...] = (
    "on_connect",
    "on_disconnect",
    "on_error",
    "on_room_join",
    "on_room_leave",
)
Hook = Callable[..., Any]


class Hooks:
    def __init__(self) -> None:
        self._hooks: dict[str, list[Hook]] = {name: [] for name in HOOK_NAMES}

    def add(self, name: HookName, hook: Hook) -> None:
        self._hooks[name].append(hook)

    def get(self, name: HookName) -> list[Hook]:
        return self._hooks[name]

    def include(self, other: Hooks) -> None:
        for name, hooks in other._hooks.items():
            self._hooks[name].extend(hooks)

    async def run(self, name: HookName, *args: Any) -> None:
        for hook in self._hooks[name]:
            try:
                result = hook(*args)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                logger.exception("%s hook %s raised", name, getattr(hook, "__qualname__", hook))
