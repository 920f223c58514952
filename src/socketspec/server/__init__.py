"""The WebSocket server: one shard serving a ``SocketApp`` on wsproto and uvloop.

``frames`` and ``http`` are sans-I/O codecs; ``deflate`` bounds permessage-deflate;
``protocol`` is the per-connection actor shell around wsproto; ``shard`` owns the
listener, the event loop and the drain; ``cli`` parses ``socketspec-cluster``.
"""
