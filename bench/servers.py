"""Servers under test as subprocesses, and what /proc says about them.

Shared by ``bench/run.py``, ``bench/echo.py``, ``bench/broadcast.py`` and
``bench/conformance.py``: start a server command, wait (bounded) for its "listening on
ws://127.0.0.1:PORT/PATH" line (and, when asked, its "metrics at
http://127.0.0.1:PORT/metrics" line), stop it with SIGTERM (then SIGKILL), and read the
resident memory and CPU time of its process tree from /proc.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parent.parent
LISTENING = re.compile(r"listening on ws://(127\.0\.0\.1):(\d+)(/\S*)?")
METRICS = re.compile(r"metrics at http://(127\.0\.0\.1):(\d+)(/\S*)")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class ServerError(RuntimeError):
    """The server did not come up."""


@dataclass
class Server:
    name: str
    process: subprocess.Popen[str]
    host: str
    port: int
    path: str
    log_path: Path
    output: deque[str] = field(default_factory=lambda: deque(maxlen=200))
    metrics_port: int | None = None  # the announced /metrics endpoint, when asked for
    metrics_path: str = "/metrics"

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}{self.path}"

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, wait up to ``timeout`` seconds, then SIGKILL; returns the exit code."""
        process = self.process
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        return process.returncode

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def pin_prefix(cpu: int | None) -> list[str]:
    """``taskset -c CPU`` when asked for, available and the machine has that core."""
    if cpu is None or cpu >= (os.cpu_count() or 1) or shutil.which("taskset") is None:
        return []
    return ["taskset", "-c", str(cpu)]


def start_server(
    name: str,
    argv: list[str],
    *,
    cwd: Path | None = None,
    cpu: int | None = None,
    ready_timeout: float = 30.0,
    env: dict[str, str] | None = None,
    expect_metrics: bool = False,
) -> Server:
    """Run ``argv`` and wait for its "listening on" line (printed on stdout), and then for
    its "metrics at" line too when ``expect_metrics``."""
    log_dir = Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))
    log_path = log_dir / "stderr.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [*pin_prefix(cpu), *argv],
            cwd=cwd or REPO,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            env=env,
        )
    if cpu is not None and not pin_prefix(cpu) and cpu < (os.cpu_count() or 1):
        os.sched_setaffinity(process.pid, {cpu})  # no taskset: pin it from here
    assert process.stdout is not None
    ready = threading.Event()
    metrics_ready = threading.Event()
    found: list[re.Match[str]] = []
    found_metrics: list[re.Match[str]] = []
    output: deque[str] = deque(maxlen=200)

    def pump() -> None:
        # Keeps reading after the announcement so that the pipe never fills.
        assert process.stdout is not None
        for line in process.stdout:
            output.append(line.rstrip("\n"))
            if not found:
                match = LISTENING.search(line)
                if match:
                    found.append(match)
                    ready.set()
            if not found_metrics:
                match = METRICS.search(line)
                if match:
                    found_metrics.append(match)
                    metrics_ready.set()
        ready.set()  # EOF: the server exited
        metrics_ready.set()

    threading.Thread(target=pump, name=f"{name}-stdout", daemon=True).start()
    server = Server(name, process, "127.0.0.1", 0, "/", log_path, output)
    if not ready.wait(ready_timeout) or not found:
        server.stop(5)
        raise ServerError(
            f"{name} did not announce a port within {ready_timeout:g}s "
            f"(exit code {process.returncode}); stdout: {list(output)[-5:]}; "
            f"stderr:\n{server.log_tail()}"
        )
    match = found[0]
    server.host = match.group(1)
    server.port = int(match.group(2))
    server.path = match.group(3) or "/"
    if expect_metrics:
        # The supervisor prints it right after the "listening on" line.
        if not metrics_ready.wait(ready_timeout) or not found_metrics:
            server.stop(5)
            raise ServerError(
                f"{name} did not announce its metrics endpoint within {ready_timeout:g}s "
                f"(exit code {process.returncode}); stdout: {list(output)[-5:]}"
            )
        server.metrics_port = int(found_metrics[0].group(2))
        server.metrics_path = found_metrics[0].group(3)
    return server


def source_revision() -> str:
    """The commit the server code comes from, and whether src/ differs from it."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "src"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown commit"
    return f"commit {commit}" + (" with uncommitted changes in src/" if dirty else "")


# -- /proc ----------------------------------------------------------------------------------------


def descendants(pid: int) -> list[int]:
    """``pid`` and every live descendant (depth first)."""
    result = [pid]
    index = 0
    while index < len(result) and index < 10_000:
        current = result[index]
        index += 1
        try:
            tasks = os.listdir(f"/proc/{current}/task")
        except OSError:
            continue
        for tid in tasks:
            try:
                text = Path(f"/proc/{current}/task/{tid}/children").read_text()
            except OSError:
                continue
            result.extend(int(child) for child in text.split())
    return result


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces; everything after its ')' splits cleanly.
    return text[text.rindex(")") + 2 :].split()


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` and its live descendants, plus the reaped children."""
    ticks = 0
    for index, member in enumerate(descendants(pid)):
        fields = _stat_fields(member)
        if fields is None:
            continue
        # fields[0] is field 3 (state): utime is field 14, stime 15, cutime 16, cstime 17.
        ticks += int(fields[11]) + int(fields[12])
        if index == 0:
            ticks += int(fields[13]) + int(fields[14])
    return ticks / CLOCK_TICKS


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` alone (not its children); 0.0 when it is gone."""
    fields = _stat_fields(pid)
    if fields is None:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def tree_rss_kib(pid: int) -> int:
    """Sum of VmRSS (KiB) over ``pid`` and its live descendants."""
    total = 0
    for member in descendants(pid):
        try:
            text = Path(f"/proc/{member}/status").read_text()
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
                break
    return total


def machine_busy_seconds() -> float:
    """CPU seconds every core of the machine spent busy since boot (/proc/stat)."""
    with open("/proc/stat") as stat:
        fields = stat.readline().split()[1:]
    # user nice system idle iowait irq softirq steal ...: idle and iowait are not busy.
    ticks = [int(value) for value in fields[:8]]
    return (sum(ticks) - ticks[3] - ticks[4]) / CLOCK_TICKS
