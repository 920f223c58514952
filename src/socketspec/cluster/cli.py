"""``socketspec-cluster``: the command line of the server.

Owns the flags of DESIGN section 5, each also read from an environment
variable (``SOCKETSPEC_<FLAG>``), their validation (a bad flag or value is one
line on stderr and exit code 2), loading and validating the application
before any shard is forked, and logging setup; then hands over to the supervisor.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from socketspec import logs, metrics
from socketspec.app import SocketApp
from socketspec.backends.redis import DEFAULT_NODE_TTL, check_redis_url, require_redis_client
from socketspec.cluster.metrics_http import MULTIPROC_ENV, OWNED_ENV
from socketspec.cluster.supervisor import Supervisor, enable_request_migration, reloader
from socketspec.cluster.watch import SourceWatcher, source_roots
from socketspec.cluster.worker import REPORT_INTERVAL
from socketspec.errors import ConfigurationError
from socketspec.loader import AppLoadError, load_app
from socketspec.push.api import parse_keys
from socketspec.server.config import ServerConfig

if TYPE_CHECKING:  # the Redis package is imported only when a Redis URL is given
    from socketspec.cluster.redis.settings import RedisSettings

ENV_PREFIX = "SOCKETSPEC_"
MIN_SHARD_TIMEOUT = 4 * REPORT_INTERVAL  # a few late reports never get a shard killed
_UNITS = {
    "": 1,
    "b": 1,
    "k": 1024,
    "kb": 1024,
    "kib": 1024,
    "m": 1 << 20,
    "mb": 1 << 20,
    "mib": 1 << 20,
    "g": 1 << 30,
    "gb": 1 << 30,
    "gib": 1 << 30,
}


def parse_size(text: str) -> int:
    """``16MiB``, ``512k``, ``1048576`` → bytes."""
    value = text.strip().lower()
    number = value.rstrip("abcdefghijklmnopqrstuvwxyz")
    unit = value[len(number) :].strip()
    if unit not in _UNITS or not number:
        raise argparse.ArgumentTypeError(f"invalid size {text!r} (use e.g. 16MiB, 512KiB, 1024)")
    try:
        size = int(float(number) * _UNITS[unit])
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid size {text!r}") from None
    if size <= 0:
        raise argparse.ArgumentTypeError(f"size must be positive, got {text!r}")
    return size


def parse_workers(text: str) -> int:
    if text == "auto":
        return os.cpu_count() or 1
    try:
        workers = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--workers takes a number or 'auto', got {text!r}"
        ) from None
    if workers < 1:
        raise argparse.ArgumentTypeError(f"--workers must be at least 1, got {workers}")
    return workers


def parse_port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid port {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port out of range: {port}")
    return port


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {text!r}")
    return value


def redis_url(text: str) -> str:
    try:
        return check_redis_url(text)
    except ConfigurationError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def positive_ttl(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
    return value


def connection_cap(text: str) -> int:
    """A count of connections; 0 is no cap."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"takes a whole number of connections (0: no cap), got {text!r}"
        ) from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative (0: no cap), got {value}")
    return value


class OneLineParser(argparse.ArgumentParser):
    """Errors are one line on stderr and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def env_default(flag: str, default: Any) -> Any:
    return os.environ.get(ENV_PREFIX + flag.upper().replace("-", "_"), default)


def env_flag(flag: str) -> bool:
    raw = os.environ.get(ENV_PREFIX + flag.upper().replace("-", "_"), "")
    return raw.strip().lower() in ("1", "true", "yes", "on")


def build_parser() -> OneLineParser:
    parser = OneLineParser(
        prog="socketspec-cluster",
        description="Serve a socketspec application. Every flag can also be set with an "
        "environment variable SOCKETSPEC_<FLAG> (e.g. SOCKETSPEC_PORT=9000, "
        "SOCKETSPEC_COMPRESSION=1); a flag on the command line wins.",
    )
    parser.add_argument(
        "app",
        nargs="?",
        default=env_default("app", None),
        metavar="APP",
        help="package.module:attribute naming a SocketApp (env SOCKETSPEC_APP); without it, "
        "every handler library of the 'socketspec.handlers' entry-point group is served",
    )
    parser.add_argument(
        "--workers",
        type=parse_workers,
        default=env_default("workers", "1"),
        help="shards to run, or 'auto' for one per core (env SOCKETSPEC_WORKERS)",
    )
    parser.add_argument(
        "--host",
        default=env_default("host", "127.0.0.1"),
        help="address to listen on (env SOCKETSPEC_HOST, default 127.0.0.1)",
    )
    parser.add_argument(
        "--port",
        type=parse_port,
        default=env_default("port", "8000"),
        help="port to listen on; 0 picks a free one (env SOCKETSPEC_PORT)",
    )
    parser.add_argument(
        "--path",
        default=env_default("path", "/ws"),
        help="WebSocket path; namespace /x is served at <path>/x (env SOCKETSPEC_PATH)",
    )
    parser.add_argument(
        "--metrics-port",
        type=parse_port,
        default=env_default("metrics-port", None),
        help="also serve /metrics on this port of the supervisor's; 0 picks a free one "
        "(env SOCKETSPEC_METRICS_PORT; default: none, /metrics is on the cluster's port)",
    )
    parser.add_argument(
        "--no-metrics",
        action="store_true",
        default=env_flag("no-metrics"),
        help="record no per-message metrics and serve no /metrics (env SOCKETSPEC_NO_METRICS=1)",
    )
    parser.add_argument(
        "--metrics-host",
        default=env_default("metrics-host", "127.0.0.1"),
        help="address of --metrics-port (env SOCKETSPEC_METRICS_HOST, default 127.0.0.1)",
    )
    parser.add_argument(
        "--certfile",
        default=env_default("certfile", None),
        help="TLS certificate (PEM) to serve wss:// (env SOCKETSPEC_CERTFILE)",
    )
    parser.add_argument(
        "--keyfile",
        default=env_default("keyfile", None),
        help="TLS private key (PEM) (env SOCKETSPEC_KEYFILE)",
    )
    parser.add_argument(
        "--graceful-timeout",
        type=positive_float,
        default=env_default("graceful-timeout", "30"),
        help="seconds running handlers get on shutdown (env SOCKETSPEC_GRACEFUL_TIMEOUT)",
    )
    parser.add_argument(
        "--max-message-size",
        type=parse_size,
        default=env_default("max-message-size", "16MiB"),
        help="hard cap on one frame or message; larger closes with 1009 "
        "(env SOCKETSPEC_MAX_MESSAGE_SIZE)",
    )
    parser.add_argument(
        "--max-outbound",
        type=parse_size,
        default=env_default("max-outbound", "1MiB"),
        help="unsent bytes past which a connection is closed with 4008 "
        "(env SOCKETSPEC_MAX_OUTBOUND)",
    )
    parser.add_argument(
        "--max-connections",
        metavar="N",
        type=connection_cap,
        default=env_default("max-connections", "10000"),
        help="WebSocket connections per shard; past it an upgrade is answered 503 with "
        "Retry-After; 0: no cap (env SOCKETSPEC_MAX_CONNECTIONS, default 10000)",
    )
    parser.add_argument(
        "--max-per-ip",
        metavar="N",
        type=connection_cap,
        default=env_default("max-per-ip", "0"),
        help="WebSocket connections per client address per shard; past it 429 with "
        "Retry-After (env SOCKETSPEC_MAX_PER_IP, default 0: no cap)",
    )
    parser.add_argument(
        "--handshake-timeout",
        metavar="SECONDS",
        type=positive_ttl,
        default=env_default("handshake-timeout", "10"),
        help="a connection that has not completed its HTTP upgrade by then is dropped "
        "(env SOCKETSPEC_HANDSHAKE_TIMEOUT, default 10)",
    )
    parser.add_argument(
        "--compression",
        action="store_true",
        default=env_flag("compression"),
        help="accept permessage-deflate (env SOCKETSPEC_COMPRESSION=1)",
    )
    parser.add_argument(
        "--echo",
        action="store_true",
        default=env_flag("echo"),
        help="serve a bare echo endpoint instead of an app (env SOCKETSPEC_ECHO=1)",
    )
    parser.add_argument(
        "--redis",
        metavar="URL",
        type=redis_url,
        default=env_default("redis", None),
        help="share rooms with every node on this Redis, e.g. redis://127.0.0.1:6379/0 "
        "(env SOCKETSPEC_REDIS; default: the app's RedisBackend, if any)",
    )
    parser.add_argument(
        "--redis-node-ttl",
        metavar="SECONDS",
        type=positive_ttl,
        default=env_default("redis-node-ttl", None),
        help="a node that stops refreshing its liveness key for this long no longer counts "
        "its members (default 15, or the app's RedisBackend's; env SOCKETSPEC_REDIS_NODE_TTL)",
    )
    parser.add_argument(
        "--log-level",
        default=env_default("log-level", "info"),
        choices=["debug", "info", "warning", "error", "critical"],
        help="(env SOCKETSPEC_LOG_LEVEL)",
    )
    parser.add_argument(
        "--log-json",
        action="store_true",
        default=env_flag("log-json"),
        help="one JSON object per log line (env SOCKETSPEC_LOG_JSON=1)",
    )
    parser.add_argument(
        "--metrics-token",
        type=metrics_token,
        default=env_default("metrics-token", None),
        help="/metrics answers only with this token, as 'Authorization: Bearer TOKEN' or "
        "?token=TOKEN; 401 without it, 403 with a wrong one (env SOCKETSPEC_METRICS_TOKEN; "
        "default: open)",
    )
    parser.add_argument(
        "--api-key",
        dest="api_keys",
        metavar="KEY",
        action="append",
        type=api_key,
        default=None,
        help="serve the HTTP publish API (/api/...) to requests presenting this key, as "
        "'Authorization: Bearer KEY' or 'X-API-Key: KEY'; repeat it or give a comma list "
        "(env SOCKETSPEC_API_KEY; default: no API)",
    )
    parser.add_argument(
        "--shard-timeout",
        metavar="SECONDS",
        type=shard_timeout,
        default=env_default("shard-timeout", "10"),
        help="a shard whose event loop sends no liveness report for this long is killed "
        "and replaced (env SOCKETSPEC_SHARD_TIMEOUT, default 10)",
    )
    parser.add_argument(
        "--reload",
        action="store_true",
        default=env_flag("reload"),
        help="for development: restart the shards when a .py file of the app's package "
        "changes (env SOCKETSPEC_RELOAD=1); refuses --workers above 1 unless "
        "--reload-any-workers",
    )
    parser.add_argument(
        "--reload-any-workers",
        action="store_true",
        default=env_flag("reload-any-workers"),
        help="let --reload run with --workers above 1 (env SOCKETSPEC_RELOAD_ANY_WORKERS=1)",
    )
    return parser


def metrics_token(text: str) -> str:
    token = text.strip()
    if not token:
        raise argparse.ArgumentTypeError("--metrics-token must not be empty")
    return token


def api_key(text: str) -> str:
    keys = parse_keys([text])
    if not keys:
        raise argparse.ArgumentTypeError("--api-key must not be empty")
    return ",".join(keys)


def shard_timeout(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value >= MIN_SHARD_TIMEOUT:  # NaN fails too
        raise argparse.ArgumentTypeError(
            f"must be at least {MIN_SHARD_TIMEOUT:g} seconds (shards report every "
            f"{REPORT_INTERVAL:g}s), got {text!r}"
        )
    return value


def redis_from(args: argparse.Namespace, app: SocketApp | None = None) -> RedisSettings | None:
    """The Redis flags, falling back to the app's own ``RedisBackend``; None without a URL
    (or in echo mode, which has no rooms)."""
    backend = app.redis if app is not None else None
    url = args.redis or (backend.url if backend is not None else None)
    if url is None or args.echo:
        return None
    if args.redis_node_ttl is not None:
        node_ttl = args.redis_node_ttl
    else:
        node_ttl = backend.node_ttl if backend is not None else DEFAULT_NODE_TTL
    from socketspec.cluster.redis.settings import RedisSettings

    return RedisSettings(url, node_ttl)


def config_from(args: argparse.Namespace) -> ServerConfig:
    return ServerConfig(
        host=args.host,
        port=args.port,
        path="/" + args.path.strip("/"),
        max_message_size=args.max_message_size,
        max_outbound=args.max_outbound,
        max_connections=args.max_connections,
        max_per_ip=args.max_per_ip,
        handshake_timeout=args.handshake_timeout,
        compression=args.compression,
        graceful_timeout=args.graceful_timeout,
        certfile=args.certfile,
        keyfile=args.keyfile,
        log_level=args.log_level,
        log_json=args.log_json,
        serve_metrics=not args.no_metrics,
        metrics_token=args.metrics_token,
        api_keys=parse_keys(
            getattr(args, "api_keys", None) or [os.environ.get("SOCKETSPEC_API_KEY", "")]
        ),
    )


def use_multiprocess_metrics(argv: Sequence[str] | None) -> None:
    """Shards record into files the supervisor sums. prometheus_client chooses how it stores
    values when it is first imported, which has happened by now: when no directory is set,
    set one and start this command again, so that the choice is made with it."""
    if os.environ.get(MULTIPROC_ENV):
        return
    os.environ[MULTIPROC_ENV] = tempfile.mkdtemp(prefix="socketspec-metrics-")
    os.environ[OWNED_ENV] = "1"
    args = list(sys.argv[1:] if argv is None else argv)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-m", "socketspec.cluster.cli", *args])


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.keyfile and not args.certfile:
        parser.error("--keyfile needs --certfile")
    if args.reload and args.echo:
        parser.error("--reload reloads an app; --echo serves none")
    if args.reload and args.workers > 1 and not args.reload_any_workers:
        parser.error(
            f"--reload is a development flag for one shard, got --workers {args.workers} "
            "(add --reload-any-workers to reload them all)"
        )
    if args.no_metrics:
        metrics.TALLY.enabled = False
    else:
        use_multiprocess_metrics(argv)
    logs.configure(args.log_level, args.log_json)
    sys.path.insert(0, os.getcwd())  # APP modules are named relative to where we run
    app: SocketApp | None = None
    if not args.echo:
        try:
            app = load_app(args.app)
            app.startup()
        except (AppLoadError, ConfigurationError) as exc:
            parser.exit(2, f"socketspec-cluster: error: {exc}\n")
    config = config_from(args)
    redis = redis_from(args, app)
    if redis is not None:
        try:
            require_redis_client()
        except ConfigurationError as exc:
            parser.exit(2, f"socketspec-cluster: error: {exc}\n")
    enable_request_migration()
    supervisor = Supervisor(
        app,
        config,
        args.workers,
        app_spec=args.app,
        reload_app=None if args.echo else reloader(args.app),
        metrics_host=args.metrics_host,
        metrics_port=None if args.no_metrics else args.metrics_port,
        metrics_token=args.metrics_token,
        shard_timeout=args.shard_timeout,
        watcher=SourceWatcher(source_roots(args.app)) if args.reload else None,
        redis=redis,
    )
    return supervisor.run()


if __name__ == "__main__":
    sys.exit(main())
