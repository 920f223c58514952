"""Dependency injection: ``Depends`` and the per-event dependency solver.

Owns how a handler's (and a dependency's) parameters are classified once at
registration, and how they are resolved for each event: chained dependencies,
the connection, the validated payload, sync and async callables, generator
dependencies whose cleanup runs after the handler even when it raises, each
dependency evaluated at most once per event. Does not own the handler call
itself (``socketspec.pipeline``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass
from enum import Enum
from typing import Any, get_type_hints

from socketspec.connection import Connection
from socketspec.errors import ConfigurationError

CONNECTION_NAMES = frozenset({"conn", "connection"})


class Depends:
    """Declare a parameter that is filled by calling ``dependency`` for each event.

    ``use_cache=False`` calls the dependency again wherever it appears in the
    same event instead of reusing its first value.
    """

    __slots__ = ("dependency", "use_cache")

    def __init__(self, dependency: Callable[..., Any], *, use_cache: bool = True) -> None:
        if not callable(dependency):
            raise ConfigurationError(f"Depends() needs a callable, got {dependency!r}")
        self.dependency = dependency
        self.use_cache = use_cache

    def __repr__(self) -> str:
        name = getattr(self.dependency, "__name__", repr(self.dependency))
        return f"Depends({name})"


class ParamKind(Enum):
    CONNECTION = "connection"
    PAYLOAD = "payload"
    EVENT = "event"
    DEPENDENCY = "dependency"


class CallKind(Enum):
    SYNC = "sync"
    ASYNC = "async"
    GENERATOR = "generator"
    ASYNC_GENERATOR = "async_generator"


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    kind: ParamKind
    dependant: Dependant | None = None


@dataclass(frozen=True, slots=True)
class Dependant:
    """A callable and the plan to fill its keyword parameters."""

    call: Callable[..., Any]
    params: tuple[Param, ...]
    kind: CallKind
    use_cache: bool = True


def call_kind(call: Callable[..., Any]) -> CallKind:
    target = call if inspect.isroutine(call) else getattr(call, "__call__", call)  # noqa: B004
    if inspect.isasyncgenfunction(target):
        return CallKind.ASYNC_GENERATOR
    if inspect.isgeneratorfunction(target):
        return CallKind.GENERATOR
    if inspect.iscoroutinefunction(target):
        return CallKind.ASYNC
    return CallKind.SYNC


def type_hints(call: Callable[..., Any]) -> dict[str, Any]:
    """Resolved annotations of ``call``'s parameters (a class: of its constructor)."""
    if inspect.isclass(call):
        target: Any = call.__init__
    elif inspect.isroutine(call):
        target = call
    else:
        target = type(call).__call__
    try:
        hints = get_type_hints(target)
    except Exception:  # unresolvable forward references: fall back to raw annotations
        hints = dict(getattr(target, "__annotations__", {}))
    hints.pop("return", None)
    return hints


def is_connection_param(name: str, annotation: Any) -> bool:
    return (
        annotation is Connection
        or (inspect.isclass(annotation) and issubclass(annotation, Connection))
        or (annotation is inspect.Parameter.empty and name in CONNECTION_NAMES)
    )


def build_dependant(
    call: Callable[..., Any],
    *,
    payload_type: Any = None,
    use_cache: bool = True,
    _seen: tuple[Callable[..., Any], ...] = (),
) -> Dependant:
    """Classify ``call``'s parameters once; raises ConfigurationError on one it cannot fill."""
    if call in _seen:
        raise ConfigurationError(f"dependency cycle through {getattr(call, '__name__', call)!r}")
    hints = type_hints(call)
    params: list[Param] = []
    for p in inspect.signature(call).parameters.values():
        annotation = hints.get(p.name, p.annotation)
        if isinstance(p.default, Depends):
            sub = build_dependant(
                p.default.dependency,
                payload_type=payload_type,
                use_cache=p.default.use_cache,
                _seen=(*_seen, call),
            )
            params.append(Param(p.name, ParamKind.DEPENDENCY, sub))
        elif is_connection_param(p.name, annotation):
            params.append(Param(p.name, ParamKind.CONNECTION))
        elif p.name == "payload" or (payload_type is not None and annotation is payload_type):
            params.append(Param(p.name, ParamKind.PAYLOAD))
        elif p.name == "event":
            params.append(Param(p.name, ParamKind.EVENT))
        elif p.default is not inspect.Parameter.empty or p.kind in (
            inspect.Parameter.VAR_POSITIONAL,
            inspect.Parameter.VAR_KEYWORD,
        ):
            continue
        else:
            raise ConfigurationError(
                f"cannot resolve parameter {p.name!r} of dependency "
                f"{getattr(call, '__qualname__', call)!r}: annotate it as Connection, name it "
                "'conn', 'payload' or 'event', or give it a Depends(...) default"
            )
    return Dependant(call, tuple(params), call_kind(call), use_cache)


class SolveContext:
    """The per-event state of dependency resolution."""

    __slots__ = ("cache", "conn", "event", "payload", "stack")

    def __init__(self, conn: Connection, event: str, payload: Any, stack: AsyncExitStack) -> None:
        self.conn = conn
        self.event = event
        self.payload = payload
        self.stack = stack
        self.cache: dict[Callable[..., Any], Any] = {}


async def solve_params(params: tuple[Param, ...], ctx: SolveContext) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for param in params:
        if param.kind is ParamKind.DEPENDENCY:
            assert param.dependant is not None
            values[param.name] = await solve(param.dependant, ctx)
        elif param.kind is ParamKind.CONNECTION:
            values[param.name] = ctx.conn
        elif param.kind is ParamKind.PAYLOAD:
            values[param.name] = ctx.payload
        else:
            values[param.name] = ctx.event
    return values


async def solve(dependant: Dependant, ctx: SolveContext) -> Any:
    """The value of one dependency for the current event."""
    if dependant.use_cache and dependant.call in ctx.cache:
        return ctx.cache[dependant.call]
    kwargs = await solve_params(dependant.params, ctx)
    call = dependant.call
    if dependant.kind is CallKind.ASYNC_GENERATOR:
        value = await ctx.stack.enter_async_context(asynccontextmanager(call)(**kwargs))
    elif dependant.kind is CallKind.GENERATOR:
        value = ctx.stack.enter_context(contextmanager(call)(**kwargs))
    else:
        value = call(**kwargs)
        if inspect.isawaitable(value):
            value = await value
    if dependant.use_cache:
        ctx.cache[call] = value
    return value
