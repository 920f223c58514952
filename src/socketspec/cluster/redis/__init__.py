"""Rooms across nodes through Redis, in one place, imported only when a Redis URL is set.

``settings`` holds what the ``--redis`` flags say (and the node's id); ``scripts`` the
Lua the bridge runs (and ``socketspec.Emitter`` too); ``codec`` the bytes that cross
Redis (messages, member records); ``bridge`` one shard's connection to the other nodes.
Only ``bridge`` imports the ``redis`` extra. Nothing outside a node that uses Redis
imports this package: a lone node's store holds ``cluster/bridge.py``'s ``NullBridge``.
"""
