"""Event registration: payload inference, Depends detection, registry rules.

This module deliberately uses ``from __future__ import annotations``: every annotation
below is a string, and the registry must resolve it.
"""

from __future__ import annotations

from typing import Any

import pydantic
import pytest
from pydantic import BaseModel
from typing_extensions import TypedDict  # pydantic needs this one on Python < 3.12

from socketspec.connection import Connection
from socketspec.di import Depends, ParamKind, build_dependant
from socketspec.errors import (
    RESERVED_EVENTS,
    ConfigurationError,
    DuplicateEventError,
    ReservedEventNameError,
)
from socketspec.registry import (
    Broadcasts,
    Emits,
    EventDefinition,
    EventRegistry,
    normalize_namespace,
)


class NotePayload(BaseModel):
    title: str
    stars: int = 0


class PointDict(TypedDict):
    x: int
    y: int


def current_user(conn: Connection) -> str:
    return "someone"


class PageSize:
    """A class used as a dependency; its __init__ annotation is a string here."""

    def __init__(self, conn: Connection, size: int = 20) -> None:
        self.conn = conn
        self.size = size


async def on_note(conn: Connection, payload: NotePayload) -> None:
    """Create a note.

    The body is validated.
    """


async def on_raw(conn: Connection, payload: dict) -> None: ...


async def on_raw_typed(conn: Connection, payload: dict[str, Any]) -> None: ...


async def on_any(conn: Connection, payload: Any) -> None: ...


async def on_bare(conn, payload): ...  # type: ignore[no-untyped-def]


async def on_conn_only(conn: Connection) -> None: ...


async def on_nothing() -> None: ...


async def on_numbers(conn: Connection, payload: list[int]) -> None: ...


async def on_point(conn: Connection, payload: PointDict) -> None: ...


async def on_with_dep(
    conn: Connection, payload: NotePayload, user: str = Depends(current_user)
) -> None: ...


async def on_only_dep(conn: Connection, user: str = Depends(current_user)) -> None: ...


async def on_class_dep(conn: Connection, page: PageSize = Depends(PageSize)) -> None: ...  # noqa: B008


async def on_unfillable(conn: Connection, payload: dict, extra: int) -> None: ...


async def on_unfillable_kwonly(conn: Connection, payload: dict, *, extra: int) -> None: ...


async def on_optional_third(conn: Connection, payload: dict, extra: int = 3) -> None: ...


def define(handler: Any, name: str = "evt", namespace: str = "/", **kw: Any) -> EventDefinition:
    return EventDefinition.from_handler(name, namespace, handler, **kw)


# -- payload inference --------------------------------------------------------------------------


def test_pydantic_payload_is_validated_into_an_instance() -> None:
    d = define(on_note)
    assert d.payload_param == "payload"
    assert d.payload_type is NotePayload
    assert d.validates
    value = d.parse_payload({"title": "t", "stars": "3"})
    assert isinstance(value, NotePayload)
    assert value.stars == 3
    with pytest.raises(pydantic.ValidationError):
        d.parse_payload({"stars": 1})
    schema = d.payload_schema()
    assert schema is not None and "title" in schema["properties"]


@pytest.mark.parametrize("handler", [on_raw, on_raw_typed, on_any, on_bare])
def test_raw_dict_payloads(handler: Any) -> None:
    d = define(handler)
    assert d.payload_param == "payload"
    assert d.payload_type is dict
    assert not d.validates
    raw = {"anything": [1, 2], "goes": None}
    assert d.parse_payload(raw) is raw
    assert d.payload_schema() is None


def test_no_payload_parameter() -> None:
    d = define(on_conn_only)
    assert d.payload_param is None
    assert d.passes_connection
    assert not d.validates
    d2 = define(on_nothing)
    assert d2.payload_param is None
    assert not d2.passes_connection


def test_other_annotation_goes_through_type_adapter() -> None:
    d = define(on_numbers)
    assert d.validates
    assert d.parse_payload(["1", 2]) == [1, 2]  # type: ignore[arg-type]
    with pytest.raises(pydantic.ValidationError):
        d.parse_payload({"not": "a list"})
    assert d.payload_schema() == {"items": {"type": "integer"}, "type": "array"}


def test_typed_dict_payload_is_validated() -> None:
    d = define(on_point)
    assert d.validates
    assert d.parse_payload({"x": "1", "y": 2}) == {"x": 1, "y": 2}
    with pytest.raises(pydantic.ValidationError):
        d.parse_payload({"x": 1})
    schema = d.payload_schema()
    assert schema is not None and set(schema["properties"]) == {"x", "y"}


# -- dependencies -------------------------------------------------------------------------------


def test_depends_params_are_detected() -> None:
    d = define(on_with_dep)
    assert d.payload_param == "payload"
    assert d.payload_type is NotePayload
    (param,) = d.dependant.params
    assert param.name == "user"
    assert param.kind is ParamKind.DEPENDENCY
    assert param.dependant is not None and param.dependant.call is current_user
    (sub,) = param.dependant.params
    assert sub.kind is ParamKind.CONNECTION


def test_depends_without_payload() -> None:
    d = define(on_only_dep)
    assert d.payload_param is None
    assert d.passes_connection
    assert [p.name for p in d.dependant.params] == ["user"]


def test_no_depends_means_no_params() -> None:
    assert define(on_note).dependant.params == ()


def test_string_annotations_resolve_in_dependencies() -> None:
    dependant = build_dependant(current_user)
    assert [p.kind for p in dependant.params] == [ParamKind.CONNECTION]


def test_string_annotations_resolve_in_class_dependencies() -> None:
    # A class is a valid dependency; under postponed annotations its __init__ hints are
    # strings and must be resolved like a function's.
    d = define(on_class_dep)
    (param,) = d.dependant.params
    assert param.dependant is not None
    assert [p.kind for p in param.dependant.params] == [ParamKind.CONNECTION]


# -- metadata -----------------------------------------------------------------------------------


def test_docstring_is_the_description() -> None:
    assert define(on_note).description == "Create a note.\n\nThe body is validated."


def test_explicit_description_wins() -> None:
    assert define(on_note, description="Mine").description == "Mine"


def test_metadata_is_kept() -> None:
    emits = [Emits("note_saved", model=NotePayload)]
    broadcasts = [Broadcasts("note_added", room="notes:{id}")]
    d = define(
        on_note, tags=["notes"], emits=emits, broadcasts=broadcasts, ordered=True, deprecated=True
    )
    assert d.tags == ("notes",)
    assert d.emits == tuple(emits)
    assert d.broadcasts == tuple(broadcasts)
    assert d.ordered and d.deprecated


# -- unfillable parameters ----------------------------------------------------------------------


def test_unfillable_third_param_raises() -> None:
    with pytest.raises(ConfigurationError, match="extra"):
        define(on_unfillable)


def test_unfillable_keyword_only_param_raises() -> None:
    # A required keyword-only parameter without Depends can never be filled either; it must
    # be refused at registration, not fail on every call.
    with pytest.raises(ConfigurationError, match="extra"):
        define(on_unfillable_kwonly)


def test_optional_third_param_is_fine() -> None:
    d = define(on_optional_third)
    assert d.payload_param == "payload"


# -- registry -----------------------------------------------------------------------------------


def test_registry_register_and_get() -> None:
    reg = EventRegistry()
    d = define(on_note, name="note")
    reg.register(d)
    reg.validate()
    assert reg.get("/", "note") is d
    assert reg.get("/", "other") is None
    assert reg.get("/chat", "note") is None
    assert len(reg) == 1
    assert list(reg) == [d]
    assert reg.has_namespace("/")


def test_duplicate_in_same_namespace() -> None:
    reg = EventRegistry()
    first = define(on_note, name="note")
    reg.register(first)
    reg.register(define(on_raw, name="note"))
    with pytest.raises(DuplicateEventError) as info:
        reg.validate()
    assert "note" in str(info.value)
    assert reg.get("/", "note") is first


def test_same_name_in_two_namespaces_is_fine() -> None:
    reg = EventRegistry()
    a = define(on_note, name="note", namespace="/")
    b = define(on_raw, name="note", namespace="/admin")
    reg.register(a)
    reg.register(b)
    reg.validate()
    assert reg.get("/", "note") is a
    assert reg.get("/admin", "note") is b
    assert reg.namespaces() == {"/", "/admin"}


@pytest.mark.parametrize("name", sorted(RESERVED_EVENTS))
def test_reserved_names_refused(name: str) -> None:
    reg = EventRegistry()
    reg.register(define(on_raw, name=name))
    with pytest.raises(ReservedEventNameError) as info:
        reg.validate()
    assert name in str(info.value)
    assert reg.get("/", name) is None


def test_problems_are_kept_until_validate() -> None:
    reg = EventRegistry()
    reg.register(define(on_raw, name="__ping__"))  # does not raise here
    with pytest.raises(ConfigurationError):
        reg.validate()


def test_merge_carries_problems_and_events() -> None:
    a = EventRegistry()
    b = EventRegistry()
    a.register(define(on_note, name="note"))
    b.register(define(on_raw, name="note"))
    b.register(define(on_raw, name="other", namespace="/x"))
    a.merge(b)
    with pytest.raises(DuplicateEventError):
        a.validate()
    assert a.get("/x", "other") is not None


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("", "/"),
        ("/", "/"),
        ("chat", "/chat"),
        ("/chat", "/chat"),
        ("/chat/", "/chat"),
        ("chat/", "/chat"),
        ("/a/b", "/a/b"),
    ],
)
def test_normalize_namespace(given: str, expected: str) -> None:
    assert normalize_namespace(given) == expected
