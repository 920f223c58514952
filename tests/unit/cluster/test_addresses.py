"""Connection addresses: an id names its shard (and with Redis its node) and nothing else
is lost from the UUID; a member record in Redis names its node where the Lua scripts read
it, with the same length."""

from __future__ import annotations

import uuid

import pytest

from socketspec.cluster.addresses import NODE_ID_LENGTH, locate, new_connection_id
from socketspec.cluster.redis.codec import member_value, parse_member
from socketspec.cluster.redis.scripts import JOIN_SCRIPT, LUA_MEMBER_NODE, MEMBERS_SCRIPT


def test_an_id_names_its_shard_and_node() -> None:
    conn_id = new_connection_id(5, "0a1b2c3d")
    assert uuid.UUID(conn_id).version == 4
    assert locate(conn_id, with_node=True) == ("0a1b2c3d", 5)


def test_without_a_node_the_node_is_empty_and_the_tail_random() -> None:
    ids = {new_connection_id(3) for _ in range(20)}
    assert len({conn_id[-NODE_ID_LENGTH:] for conn_id in ids}) > 1  # not a fixed node
    assert {locate(conn_id, with_node=False) for conn_id in ids} == {("", 3)}


@pytest.mark.parametrize(
    "text", ["", "not-an-id", "zz" + new_connection_id(0)[2:], new_connection_id(0)[:-1]]
)
def test_what_is_not_a_cluster_id_has_no_address(text: str) -> None:
    assert locate(text, with_node=True) is None


def test_the_scripts_read_a_records_node_from_its_first_characters() -> None:
    value = member_value("0a1b2c3d", 2, {"user_id": "u"}).decode()
    assert f"string.sub(value, 1, {NODE_ID_LENGTH})" == LUA_MEMBER_NODE
    assert value[:NODE_ID_LENGTH] == "0a1b2c3d"  # what that string.sub returns
    member = parse_member("c1", value)
    assert member is not None
    assert (member.conn_id, member.node, member.shard, member.info) == (
        "c1",
        "0a1b2c3d",
        2,
        {"user_id": "u"},
    )


def test_the_redis_scripts_use_that_one_definition() -> None:
    assert f"local node = {LUA_MEMBER_NODE}" in MEMBERS_SCRIPT
    assert f"local node = {LUA_MEMBER_NODE}" in JOIN_SCRIPT
