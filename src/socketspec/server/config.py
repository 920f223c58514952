"""Server settings: what a shard needs to know besides the application.

Owns the defaults and bounds of the transport (sizes, timeouts, TLS files,
compression). Where the node meets other nodes is not here:
``socketspec.cluster.redis.settings`` holds it, made only when a Redis URL is
given. Parsing them from flags and the environment is
``socketspec.cluster.cli``'s job.
"""

from __future__ import annotations

from dataclasses import dataclass

MIB = 1024 * 1024


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8000
    path: str = "/ws"
    max_message_size: int = 16 * MIB  # hard cap: a larger frame or message closes with 1009
    max_outbound: int = 1 * MIB  # unsent bytes past which a connection is closed with 4008
    compression: bool = False
    graceful_timeout: float = 30.0
    certfile: str | None = None
    keyfile: str | None = None
    handshake_timeout: float = 10.0  # to finish the HTTP upgrade
    max_connections: int = 10_000  # WebSocket connections per shard; past it 503 (0: no cap)
    max_per_ip: int = 0  # WebSocket connections per client address per shard; 429 (0: no cap)
    close_timeout: float = 5.0  # to wait for the peer's close frame after ours
    mailbox_high_water: int = 64  # inbound messages queued before reading pauses
    mailbox_low_water: int = 16  # ... and resumes
    backlog: int = 2048
    log_level: str = "info"
    log_json: bool = False
    serve_metrics: bool = False  # GET /metrics on this port: the sum over the cluster's shards
    metrics_token: str | None = None  # when set, /metrics wants it (Bearer or ?token=)
    api_keys: tuple[str, ...] = ()  # the HTTP publish API (/api/...) is served when set
