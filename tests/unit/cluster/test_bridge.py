"""The bridge of a node without Redis: nothing crosses to other nodes, joins are decided on
this node, and a store without a Redis URL holds it (and never imports redis for it)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from socketspec.cluster.bridge import NullBridge
from socketspec.cluster.store import ClusterRoomStore
from socketspec.history import HistoryPolicy, Position


async def test_a_lone_node_reaches_no_other_node() -> None:
    bridge = NullBridge()
    assert not bridge.spans_nodes
    assert bridge.is_up  # broadcasts are never counted as undelivered for want of Redis
    await bridge.start()
    assert bridge.join("hall", "c1", 0, {}, 1) is None  # this node decides
    assert bridge.publish_room("hall", [], b"frame") is None  # no other node to count
    assert await bridge.members("hall") is None  # the home's members are the room
    assert not bridge.send_direct("0a1b2c3d", 0, "c1", b"frame")
    assert not bridge.kick("0a1b2c3d", 0, "c1", "bye")
    # No shared history: the store positions history rooms' messages itself.
    policy = HistoryPolicy(size=10)
    assert bridge.publish_history("hall", b'"hall"', [], b"{}", "", policy) is None
    assert bridge.history_since("hall", Position("abcdefgh", 0), 10) is None
    assert bridge.history_position("hall", policy) is None
    assert await bridge.shared_secret("this-node-only") == "this-node-only"
    await bridge.settled()
    await bridge.close()


def test_a_store_without_redis_holds_the_null_bridge(tmp_path: Path) -> None:
    store = ClusterRoomStore(0, 2, 1, tmp_path)
    assert isinstance(store.bridge, NullBridge)
    assert store.links.before_handover is None  # the handover waits for no Redis


def test_the_store_without_redis_does_not_import_redis(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from socketspec.cluster.store import ClusterRoomStore\n"
        f"ClusterRoomStore(0, 2, 1, Path({str(tmp_path)!r}))\n"
        "assert 'redis' not in sys.modules, 'redis imported'\n"
        "assert not any(m.startswith('socketspec.cluster.redis') for m in sys.modules)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_former_bridge_module_still_names_the_package() -> None:
    from socketspec.cluster import redis_bridge
    from socketspec.cluster.redis import bridge, codec, scripts

    assert redis_bridge.RedisBridge is bridge.RedisBridge
    assert redis_bridge.parse_member is codec.parse_member
    assert redis_bridge.MEMBERS_SCRIPT is scripts.MEMBERS_SCRIPT
