"""The publish API's pure half: key check, routes, request parsing and validation, errors."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from pydantic import BaseModel

from socketspec.push import api
from socketspec.push.messages import TargetKind


class Shipped(BaseModel):
    order_id: int


SCHEMAS = {"shipped": Shipped}
LIMIT = 200


def parse(method: str, path: str, body: Any = None) -> api.Command:
    raw = b"" if body is None else body if isinstance(body, bytes) else orjson.dumps(body)
    return api.parse(method, path, raw, SCHEMAS, LIMIT)


def refused(method: str, path: str, body: Any = None) -> api.ApiError:
    with pytest.raises(api.ApiError) as error:
        parse(method, path, body)
    return error.value


def test_keys_from_repeated_flags_and_comma_lists() -> None:
    assert api.parse_keys(["a,b", " c ", "a", ",,"]) == ("a", "b", "c")
    assert api.parse_keys([""]) == ()


def test_key_check() -> None:
    keys = ("first", "second")
    assert api.key_matches("second", keys)
    assert not api.key_matches("secon", keys)
    assert not api.key_matches(None, keys)
    assert not api.key_matches("", ("",))  # an empty key never matches
    assert api.presented_key({"authorization": "Bearer  k1 "}) == "k1"
    assert api.presented_key({"authorization": "bearer k2"}) == "k2"
    assert api.presented_key({"x-api-key": "k3"}) == "k3"
    assert api.presented_key({"authorization": "Basic xyz"}) is None


def test_publish_to_each_target() -> None:
    command = parse("POST", "/api/publish", {"room": "r", "event": "e", "payload": {"a": 1}})
    assert isinstance(command, api.Publish) and not command.batch
    (message,) = command.messages
    assert (message.kind, message.target) == (TargetKind.ROOM, "r")
    assert orjson.loads(message.frame) == {"event": "e", "payload": {"a": 1}}
    user = parse(
        "POST", "/api/publish", {"user": "u", "event": "shipped", "payload": {"order_id": "7"}}
    )
    assert isinstance(user, api.Publish)
    assert orjson.loads(user.messages[0].frame)["payload"] == {"order_id": 7}  # validated
    everyone = parse(
        "POST", "/api/publish", {"all": True, "event": "e", "exclude": ["c1"], "namespace": "/x"}
    )
    assert isinstance(everyone, api.Publish)
    assert everyone.messages[0].exclude == frozenset({"c1"})
    assert everyone.messages[0].namespace == "/x"
    assert orjson.loads(everyone.messages[0].frame)["payload"] == {}


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "no body"),
        (b"[1]", "JSON object"),
        (b"{", "not JSON"),
        ({"event": "e"}, "exactly one"),
        ({"room": "r", "user": "u", "event": "e"}, "exactly one"),
        ({"room": "", "event": "e"}, "'room'"),
        ({"room": "r"}, "'event'"),
        ({"room": "r", "event": "__ping__"}, "system event"),
        ({"room": "r", "event": "e", "payload": [1]}, "'payload'"),
        ({"room": "r", "event": "e", "exclude": "c"}, "'exclude'"),
        ({"connection": "c", "event": "e", "exclude": ["d"]}, "'exclude'"),
        ({"all": 1, "event": "e"}, "'all'"),
    ],
)
def test_malformed_is_400_with_a_reason(body: Any, reason: str) -> None:
    error = refused("POST", "/api/publish", body)
    assert error.status == 400 and reason in error.reason
    assert error.document() == {"error": "bad_request", "reason": error.reason}


def test_schema_mismatch_is_422_and_size_is_413() -> None:
    error = refused(
        "POST", "/api/publish", {"user": "u", "event": "shipped", "payload": {"order_id": "x"}}
    )
    assert error.status == 422 and error.details[0]["loc"] == ("order_id",)
    error = refused(
        "POST", "/api/publish", {"room": "r", "event": "e", "payload": {"t": "x" * LIMIT}}
    )
    assert error.status == 413 and error.details["limit"] == LIMIT


def test_a_batch_is_validated_whole() -> None:
    good = {"room": "r", "event": "e"}
    command = parse("POST", "/api/batch", {"messages": [good, {**good, "room": "s"}]})
    assert isinstance(command, api.Publish) and command.batch
    assert [m.target for m in command.messages] == ["r", "s"]
    error = refused("POST", "/api/batch", {"messages": [good, {"room": "r"}]})
    assert error.status == 400 and error.reason.startswith("messages[1]: ")
    error = refused(
        "POST", "/api/batch", {"messages": [good, {**good, "payload": {"t": "x" * LIMIT}}]}
    )
    assert error.status == 413 and error.reason.startswith("messages[1]: ")
    assert refused("POST", "/api/batch", {"messages": []}).status == 400
    assert refused("POST", "/api/batch", {"messages": [good] * (api.MAX_BATCH + 1)}).status == 400


def test_members_presence_disconnect_and_openapi() -> None:
    assert parse("GET", "/api/rooms/chat%3A1%2Fa/members") == api.Members("chat:1/a")
    assert parse("HEAD", "/api/rooms/x/members") == api.Members("x")
    assert refused("GET", "/api/rooms//members").status == 400
    assert parse("POST", "/api/presence", {"rooms": ["a"], "users": ["u"]}) == api.Presence(
        ("a",), ("u",)
    )
    assert refused("POST", "/api/presence", {}).status == 400
    assert parse("POST", "/api/disconnect", {"user": "u"}) == api.Disconnect(
        TargetKind.USER, "u", "server_close"
    )
    assert parse("POST", "/api/disconnect", {"connection": "c", "reason": "bye"}) == api.Disconnect(
        TargetKind.CONNECTION, "c", "bye"
    )
    assert refused("POST", "/api/disconnect", {"connection": "c", "user": "u"}).status == 400
    assert parse("GET", "/api/openapi.json") == api.OpenApi()


def test_routes_and_methods() -> None:
    assert refused("POST", "/api/nowhere", {}).status == 404
    assert refused("GET", "/api/publish").status == 405
    assert refused("POST", "/api/openapi.json").status == 405
    assert api.is_api_path("/api/publish") and api.is_api_path("/api")
    assert not api.is_api_path("/apix")
