"""Event registration: ``Emits``, ``Broadcasts``, ``EventDefinition`` and the registry.

Owns what an event is (its handler, payload type, dependencies and the metadata
the docs show) and the rules of registration: one handler per event name per
namespace, no reserved names. Problems found while registering are kept and
raised by ``EventRegistry.validate()`` at startup, before the first connection.
Does not own running handlers (``socketspec.pipeline``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, get_origin

from pydantic import BaseModel, TypeAdapter

from socketspec.di import (
    Dependant,
    Depends,
    Param,
    ParamKind,
    build_dependant,
    call_kind,
    type_hints,
)
from socketspec.errors import (
    RESERVED_EVENTS,
    ConfigurationError,
    DuplicateEventError,
    ReservedEventNameError,
)
from socketspec.types import EventName, Namespace

Handler = Callable[..., Any]


@dataclass(frozen=True)
class Emits:
    """Docs metadata: an event the handler emits back to the sender."""

    event: EventName
    model: type[BaseModel] | None = None
    description: str = ""


@dataclass(frozen=True)
class Broadcasts:
    """Docs metadata: an event the handler broadcasts, and to which room pattern."""

    event: EventName
    room: str | None = None
    model: type[BaseModel] | None = None
    description: str = ""


def _is_raw_payload(annotation: Any) -> bool:
    return (
        annotation is inspect.Parameter.empty
        or annotation is Any
        or annotation is dict
        or get_origin(annotation) is dict
    )


@dataclass(frozen=True)
class EventDefinition:
    """One registered event; built once, read on every message."""

    name: EventName
    namespace: Namespace
    handler: Handler
    payload_param: str | None
    payload_type: Any
    dependant: Dependant
    description: str = ""
    tags: tuple[str, ...] = ()
    emits: tuple[Emits, ...] = ()
    broadcasts: tuple[Broadcasts, ...] = ()
    ordered: bool = False
    deprecated: bool = False
    passes_connection: bool = True
    _adapter: TypeAdapter[Any] | None = field(default=None, repr=False, compare=False)

    @property
    def validates(self) -> bool:
        """Whether the payload goes through pydantic (False: the raw dict is passed)."""
        return self._adapter is not None or (
            inspect.isclass(self.payload_type) and issubclass(self.payload_type, BaseModel)
        )

    def parse_payload(self, raw: dict[str, Any]) -> Any:
        """The handler's payload value; raises pydantic.ValidationError."""
        model = self.payload_type
        if inspect.isclass(model) and issubclass(model, BaseModel):
            return model.model_validate(raw)
        if self._adapter is not None:
            return self._adapter.validate_python(raw)
        return raw

    def payload_schema(self) -> dict[str, Any] | None:
        model = self.payload_type
        if inspect.isclass(model) and issubclass(model, BaseModel):
            return model.model_json_schema()
        if self._adapter is not None:
            return self._adapter.json_schema()
        return None

    @classmethod
    def from_handler(
        cls,
        name: EventName,
        namespace: Namespace,
        handler: Handler,
        *,
        description: str = "",
        tags: list[str] | tuple[str, ...] = (),
        emits: list[Emits] | tuple[Emits, ...] = (),
        broadcasts: list[Broadcasts] | tuple[Broadcasts, ...] = (),
        ordered: bool = False,
        deprecated: bool = False,
    ) -> EventDefinition:
        """Inspect ``handler``: first parameter the connection, second the payload.

        A pydantic model (or any other annotation pydantic can validate) on the
        second parameter is validated; ``dict``, ``Any`` or no annotation passes
        the raw dict; parameters with a ``Depends`` default are dependencies.
        """
        hints = type_hints(handler)
        signature = inspect.signature(handler)
        positional = [
            p
            for p in signature.parameters.values()
            if not isinstance(p.default, Depends)
            and p.kind
            in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        ]
        if len(positional) > 2:
            extra = ", ".join(
                p.name for p in positional[2:] if p.default is inspect.Parameter.empty
            )
            if extra:
                raise ConfigurationError(
                    f"handler for {name!r} takes (conn, payload) and Depends(...) parameters; "
                    f"cannot fill: {extra}"
                )
        unfillable_keywords = [
            p.name
            for p in signature.parameters.values()
            if p.kind is inspect.Parameter.KEYWORD_ONLY and p.default is inspect.Parameter.empty
        ]
        if unfillable_keywords:
            raise ConfigurationError(
                f"handler for {name!r}: keyword-only parameters need a default or Depends(...); "
                f"cannot fill: {', '.join(unfillable_keywords)}"
            )
        payload_param = positional[1].name if len(positional) >= 2 else None
        payload_type: Any = None
        adapter: TypeAdapter[Any] | None = None
        if payload_param is not None:
            payload_type = hints.get(payload_param, positional[1].annotation)
            if isinstance(payload_type, str):
                raise ConfigurationError(
                    f"handler for {name!r}: cannot resolve payload annotation {payload_type!r}; "
                    "define the model at module level (string annotations are resolved there)"
                )
            if _is_raw_payload(payload_type):
                payload_type = dict
            elif not (inspect.isclass(payload_type) and issubclass(payload_type, BaseModel)):
                adapter = TypeAdapter(payload_type)
        # Only the Depends parameters are solved per event; conn and payload are passed directly.
        dependant = Dependant(
            handler,
            tuple(
                Param(
                    p.name,
                    ParamKind.DEPENDENCY,
                    build_dependant(
                        p.default.dependency,
                        payload_type=payload_type,
                        use_cache=p.default.use_cache,
                    ),
                )
                for p in signature.parameters.values()
                if isinstance(p.default, Depends)
            ),
            call_kind(handler),
        )
        return cls(
            name=name,
            namespace=namespace,
            handler=handler,
            payload_param=payload_param,
            payload_type=payload_type,
            dependant=dependant,
            description=description or inspect.cleandoc(handler.__doc__ or ""),
            tags=tuple(tags),
            emits=tuple(emits),
            broadcasts=tuple(broadcasts),
            ordered=ordered,
            deprecated=deprecated,
            passes_connection=len(positional) >= 1,
            _adapter=adapter,
        )


def normalize_namespace(namespace: str) -> Namespace:
    if not namespace or namespace == "/":
        return "/"
    return "/" + namespace.strip("/")


class EventRegistry:
    """All events of an application, keyed by namespace and name."""

    def __init__(self) -> None:
        self._events: dict[tuple[Namespace, EventName], EventDefinition] = {}
        self._problems: list[ConfigurationError] = []
        self._namespaces: set[Namespace] = set()

    def add_namespace(self, namespace: Namespace) -> None:
        self._namespaces.add(normalize_namespace(namespace))

    def register(self, definition: EventDefinition) -> None:
        key = (definition.namespace, definition.name)
        self._namespaces.add(definition.namespace)
        if definition.name in RESERVED_EVENTS:
            self._problems.append(
                ReservedEventNameError(
                    f"{definition.name!r} is a reserved system event and cannot have a handler "
                    f"(handler {definition.handler.__qualname__})"
                )
            )
            return
        existing = self._events.get(key)
        if existing is not None:
            self._problems.append(
                DuplicateEventError(
                    f"event {definition.name!r} in namespace {definition.namespace!r} registered "
                    f"twice: {existing.handler.__qualname__} and {definition.handler.__qualname__}"
                )
            )
            return
        self._events[key] = definition

    def validate(self) -> None:
        """Raise the first registration problem, if any."""
        if self._problems:
            raise self._problems[0]

    def get(self, namespace: Namespace, event: EventName) -> EventDefinition | None:
        return self._events.get((namespace, event))

    def namespaces(self) -> set[Namespace]:
        return set(self._namespaces)

    def has_namespace(self, namespace: Namespace) -> bool:
        return namespace in self._namespaces

    def __iter__(self) -> Iterator[EventDefinition]:
        return iter(list(self._events.values()))

    def __len__(self) -> int:
        return len(self._events)

    def merge(self, other: EventRegistry) -> None:
        self._namespaces |= other._namespaces
        self._problems.extend(other._problems)
        for definition in other:
            self.register(definition)
