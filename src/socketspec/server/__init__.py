"""The WebSocket server: one shard serving a ``SocketApp`` on wsproto and uvloop.

``codec``, ``frames``, ``opcodes``, ``http``, ``outbound`` and ``caps`` are sans-I/O
pieces; ``websocket`` is the sans-I/O connection (phases, closing handshake,
outbound queue); ``protocol`` is its asyncio adapter and the per-connection actor
shell; ``shard`` owns the listener, the event loop and the drain; ``config`` the
settings. ``cli`` is an alias of ``socketspec.cluster.cli``, which parses
``socketspec-cluster``.
"""
