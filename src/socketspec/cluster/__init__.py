"""The cluster: a supervisor, N shards, the pipes between them and room actors across them.

``codec`` is the sans-I/O pipe message codec; ``links`` moves its frames between
shards; ``store`` is the room store whose room actors live on each room's home
shard; ``worker`` boots a shard after fork; ``supervisor`` forks, watches,
restarts and stops the shards.
"""
