"""Error codes, close codes, reserved events and exception mapping (DESIGN section 3)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from socketspec import errors
from socketspec.errors import (
    ERROR_CODES,
    RESERVED_EVENTS,
    CloseCode,
    ErrorCode,
)


def test_error_codes_match_design() -> None:
    assert (
        frozenset(
            {
                "AUTH_ERROR",
                "AUTH_EXPIRED",
                "HANDLER_ERROR",
                "IDLE_TIMEOUT",
                "PAYLOAD_TOO_LARGE",
                "PERMISSION_ERROR",
                "RATE_LIMIT_ERROR",
                "ROOM_NOT_FOUND",
                "RECOVERY_INVALID",
                "RECOVERY_EXPIRED",
                "RECOVERY_FOREIGN",
                "SESSION_EXPIRED",
                "UNKNOWN_EVENT",
                "VALIDATION_ERROR",
            }
        )
        == ERROR_CODES
    )
    assert {c.value for c in ErrorCode} == ERROR_CODES


def test_error_code_is_its_string() -> None:
    assert str(ErrorCode.AUTH_ERROR) == "AUTH_ERROR"
    assert ErrorCode.ROOM_NOT_FOUND == "ROOM_NOT_FOUND"


def test_close_code_values() -> None:
    assert sorted(int(c) for c in CloseCode) == [
        1000,
        1001,
        1002,
        1007,
        1009,
        1011,
        1013,
        4001,
        4002,
        4003,
        4004,
        4005,
        4008,
    ]


@pytest.mark.parametrize(
    ("member", "value"),
    [
        ("NORMAL", 1000),
        ("SERVER_SHUTDOWN", 1001),
        ("PROTOCOL_ERROR", 1002),
        ("INVALID_UTF8", 1007),
        ("MESSAGE_TOO_BIG", 1009),
        ("INTERNAL_ERROR", 1011),
        ("OVER_CAPACITY", 1013),
        ("AUTH_FAILED", 4001),
        ("TOKEN_EXPIRED", 4002),
        ("SESSION_EXPIRED", 4003),
        ("IDLE_TIMEOUT", 4004),
        ("HEARTBEAT_TIMEOUT", 4005),
        ("SLOW_CONSUMER", 4008),
    ],
)
def test_close_code_meaning(member: str, value: int) -> None:
    assert CloseCode[member] == value


def test_reserved_events_match_design() -> None:
    assert (
        frozenset(
            {
                "__connect__",
                "__disconnect__",
                "__error__",
                "__ping__",
                "__pong__",
                "__auth_expiring__",
                "__recovery__",
                "__session_expiring__",
                "__idle_warning__",
                "__server_shutdown__",
                "__refresh_auth__",
                "__ack__",
            }
        )
        == RESERVED_EVENTS
    )


@pytest.mark.parametrize(
    ("exc_type", "code"),
    [
        (errors.EventError, ErrorCode.HANDLER_ERROR),
        (errors.AuthenticationError, ErrorCode.AUTH_ERROR),
        (errors.TokenExpiredError, ErrorCode.AUTH_EXPIRED),
        (errors.RoomPermissionError, ErrorCode.PERMISSION_ERROR),
        (errors.RoomFullError, ErrorCode.PERMISSION_ERROR),
        (errors.RoomNotFoundError, ErrorCode.ROOM_NOT_FOUND),
        (errors.RateLimitError, ErrorCode.RATE_LIMIT_ERROR),
        (errors.ValidationFailed, ErrorCode.VALIDATION_ERROR),
        (errors.UnknownEventError, ErrorCode.UNKNOWN_EVENT),
        (errors.PayloadTooLargeError, ErrorCode.PAYLOAD_TOO_LARGE),
    ],
)
def test_event_error_codes(exc_type: type[errors.EventError], code: ErrorCode) -> None:
    exc = exc_type("msg", details={"k": "v"})
    assert exc.code is code
    assert exc.message == "msg"
    assert str(exc) == "msg"
    assert exc.details == {"k": "v"}
    assert isinstance(exc, errors.EventError)
    assert isinstance(exc, errors.SocketSpecError)


def test_event_error_code_override_is_per_instance() -> None:
    exc = errors.EventError("x", code=ErrorCode.IDLE_TIMEOUT)
    assert exc.code is ErrorCode.IDLE_TIMEOUT
    assert errors.EventError("y").code is ErrorCode.HANDLER_ERROR
    assert errors.EventError().details == {}


def test_hierarchy() -> None:
    assert issubclass(errors.TokenExpiredError, errors.AuthenticationError)
    assert issubclass(errors.RoomFullError, errors.RoomPermissionError)
    assert issubclass(errors.DuplicateEventError, errors.ConfigurationError)
    assert issubclass(errors.ReservedEventNameError, errors.ConfigurationError)
    assert issubclass(errors.OriginNotAllowedError, errors.ConnectRejected)
    assert not issubclass(errors.ConnectRejected, errors.EventError)
    assert issubclass(errors.IllegalTransitionError, errors.SocketSpecError)


def test_connection_auth_error_close_code() -> None:
    assert errors.ConnectionAuthError("no").close_code == 4001
    assert errors.ConnectionAuthError("late", CloseCode.TOKEN_EXPIRED).close_code == 4002


def test_system_event_members_are_the_reserved_names_on_the_wire() -> None:
    assert {event.value for event in errors.SystemEvent} == RESERVED_EVENTS
    # A member is its wire string: it compares, hashes and serialises as the name.
    assert errors.SystemEvent.ACK == "__ack__"
    assert {"__error__": 1}[errors.SystemEvent.ERROR] == 1
    assert f"{errors.SystemEvent.PING}" == "__ping__"


def test_client_system_events_are_the_ones_a_client_sends() -> None:
    assert set(errors.CLIENT_SYSTEM_EVENTS) == {"__pong__", "__refresh_auth__"}
    assert all(isinstance(e, errors.SystemEvent) for e in errors.CLIENT_SYSTEM_EVENTS)


def test_the_protocol_page_lists_the_system_event_table_with_its_directions() -> None:
    page = (Path(__file__).resolve().parents[2] / "docs" / "protocol.md").read_text()
    section = page.split("## System events", 1)[1].split("\n## ", 1)[0]
    listed: dict[str, str] = {}
    for row in section.splitlines():
        cells = [c.strip() for c in row.strip("|").split("|")]
        if len(cells) == 3 and "→" in cells[1]:
            for name in re.findall(r"`(__\w+__)`", cells[0]):
                listed[name] = cells[1]
    assert set(listed) == set(errors.SystemEvent)
    client_sends = {name for name, direction in listed.items() if direction.startswith("client")}
    assert client_sends == set(errors.CLIENT_SYSTEM_EVENTS)
