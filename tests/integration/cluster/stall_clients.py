"""Slow-loris clients, run as their own process so that they take no time from the test's
event loop: ``python stall_clients.py PORT PATH COUNT TIMEOUT``.

Opens ``COUNT`` TCP connections to 127.0.0.1:PORT, sends each an HTTP upgrade request that
stops before the blank line ending its head, then waits (at most ``TIMEOUT`` seconds) for
the server to drop them. Prints one JSON line when all are open (``{"opened": N,
"seconds": S}``) and one at the end: how many the server closed and, for each, how long after
its request the close came (min, max).
"""

from __future__ import annotations

import json
import selectors
import socket
import sys
import time


def main() -> int:
    port, path, count, timeout = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    partial = (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\n"
    ).encode()
    selector = selectors.DefaultSelector()
    sent_at: dict[socket.socket, float] = {}
    started = time.monotonic()
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.sendall(partial)
        sock.setblocking(False)
        sent_at[sock] = time.monotonic()
        selector.register(sock, selectors.EVENT_READ)
    print(json.dumps({"opened": count, "seconds": time.monotonic() - started}), flush=True)
    after: list[float] = []
    deadline = time.monotonic() + timeout
    while sent_at and time.monotonic() < deadline:
        for key, _ in selector.select(0.1):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            try:
                data = sock.recv(4096)
            except ConnectionResetError:
                data = b""
            if data:  # the server answered a request it never got whole: count it apart
                print(json.dumps({"answered": data[:200].decode("latin-1")}), flush=True)
            after.append(time.monotonic() - sent_at.pop(sock))
            selector.unregister(sock)
            sock.close()
    print(
        json.dumps(
            {
                "closed_by_server": len(after),
                "still_open": len(sent_at),
                "min_after": min(after, default=None),
                "max_after": max(after, default=None),
            }
        ),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
