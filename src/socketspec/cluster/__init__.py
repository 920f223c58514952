"""The cluster: a supervisor, N shards, the links between them and room actors across them.

``codec`` is the sans-I/O link message codec; ``links`` moves its frames between
shards over Unix sockets; ``router`` dispatches them by type; ``asks`` pairs asks
with replies; ``store`` is the room store whose room actors live on each room's
home shard; ``bridge`` is what it asks of the other nodes (``redis/`` with
Redis); ``addresses`` says where a connection id lives; ``worker`` boots a shard
after fork; ``supervisor`` forks, watches, restarts and stops the shards; ``cli``
is the ``socketspec-cluster`` command.
"""
