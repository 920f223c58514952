"""Run the whole Autobahn suite (kosoku) against the echo server; write docs/conformance.md.

    make conformance
    .venv/bin/python bench/conformance.py [--include '9.*'] [--reports DIR] [--doc PATH]

Starts ``socketspec-cluster --echo --compression --port 0``, runs kosoku with
``-p 4`` against it, stops the server, counts the cases by behavior and writes
the report. Exits 1 when a case FAILED (or closed WRONG CODE / UNCLEAN), 2 when
the run itself broke (no server, no index.json).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import subprocess
import sys
import tempfile
import time
from collections import Counter
from importlib.metadata import version
from pathlib import Path
from typing import Any

from servers import BIN, REPO, ServerError, source_revision, start_server

STATUSES = ("OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED")
# Autobahn's other failing verdicts (its behaviorClose uses them).
FAILING = frozenset({"FAILED", "WRONG CODE", "UNCLEAN"})
FULL_SUITE = 517
KOSOKU_TIMEOUT = 30 * 60  # seconds; a full run takes about 5.5 minutes on 2 cores
SERVER_ARGV = ["--echo", "--compression", "--port", "0"]


def case_key(case_id: str) -> list[int]:
    return [int(part) for part in case_id.split(".")]


def run_kosoku(address: str, outdir: Path, include: list[str], parallelism: int) -> int:
    argv = [str(BIN / "kosoku"), "-p", str(parallelism), "-o", str(outdir)]
    for pattern in include:
        argv += ["-i", pattern]
    argv.append(address)
    print("+", " ".join(argv), flush=True)
    completed = subprocess.run(argv, check=False, timeout=KOSOKU_TIMEOUT)
    return completed.returncode


def load_results(outdir: Path) -> dict[str, dict[str, Any]]:
    """Case id -> its index.json entry, plus description and result from its own report."""
    index = json.loads((outdir / "index.json").read_text())
    cases: dict[str, dict[str, Any]] = {}
    for agent_cases in index.values():
        for case_id, entry in agent_cases.items():
            record = dict(entry)
            report = outdir / entry.get("reportfile", "")
            if entry.get("behavior") != "OK" and report.is_file():
                detail = json.loads(report.read_text())
                record["description"] = detail.get("description", "")
                record["result"] = detail.get("result", "")
                record["resultClose"] = detail.get("resultClose", "")
            cases[case_id] = record
    return cases


def duration(seconds: float) -> str:
    whole = round(seconds)
    return f"{whole} s" if whole < 60 else f"{whole // 60} min {whole % 60} s"


def cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ").strip()


def render(
    cases: dict[str, dict[str, Any]],
    *,
    include: list[str],
    started: dt.datetime,
    elapsed: float,
    parallelism: int,
    revision: str,
) -> str:
    counts = Counter(str(case.get("behavior")) for case in cases.values())
    close_counts = Counter(str(case.get("behaviorClose")) for case in cases.values())
    statuses = list(STATUSES) + sorted(set(counts) - set(STATUSES))
    selection = "all cases" if not include else "cases " + ", ".join(f"`{p}`" for p in include)
    lines = [
        "# WebSocket conformance",
        "",
        "The [Autobahn TestSuite](https://github.com/crossbario/autobahn-testsuite) cases, run "
        "by kosoku against the server's bare echo endpoint "
        f"(`socketspec-cluster {' '.join(SERVER_ARGV)}`), {selection}.",
        "",
        f"- Date: {started:%Y-%m-%d %H:%M} UTC",
        f"- Server code: {revision}",
        f"- kosoku {version('kosoku')}, socketspec {version('socketspec')}, "
        f"wsproto {version('wsproto')}, Python {platform.python_version()}",
        f"- Cases run: {len(cases)}"
        + (f" (the full suite is {FULL_SUITE})" if not include and len(cases) != FULL_SUITE else "")
        + f", `-p {parallelism}`, {duration(elapsed)}",
        "",
        "| behavior | cases |",
        "|---|---:|",
    ]
    lines += [f"| {status} | {counts.get(status, 0)} |" for status in statuses]
    lines += [
        "",
        "Closing behavior (`behaviorClose`): "
        + ", ".join(f"{status} {n}" for status, n in sorted(close_counts.items())),
        "",
        "## Cases that are not OK",
        "",
    ]
    odd = sorted(
        (case_id for case_id, case in cases.items() if case.get("behavior") != "OK"),
        key=case_key,
    )
    if not odd:
        lines.append("None.")
    else:
        lines += [
            "| case | behavior | close | remote close code | description | result |",
            "|---|---|---|---:|---|---|",
        ]
        for case_id in odd:
            case = cases[case_id]
            lines.append(
                f"| {case_id} | {case.get('behavior')} | {case.get('behaviorClose')} "
                f"| {case.get('remoteCloseCode')} | {cell(case.get('description', ''))} "
                f"| {cell(case.get('result', ''))} |"
            )
        lines += [
            "",
            "INFORMATIONAL cases have no right answer in RFC 6455 (what the server does with a "
            "message still being written when a close arrives, which close codes it echoes); "
            "they are reported, not judged.",
        ]
    lines += [
        "",
        "## Reproduce",
        "",
        "```bash",
        "make conformance          # this page; exits non-zero if a case FAILED",
        "# or by hand:",
        f".venv/bin/socketspec-cluster {' '.join(SERVER_ARGV)}   # prints the port",
        ".venv/bin/kosoku -p 4 -o reports 127.0.0.1:PORT   # -i '9.*' / -x '12.*' to select",
        "```",
        "",
        "`reports/index.html` has every case's wire log. `make test` runs sections 1 to 10 "
        "(`tests/integration/test_conformance.py`) without compression's sections 12 and 13.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "-i", "--include", action="append", default=[], help="kosoku case glob (repeatable)"
    )
    parser.add_argument("-p", "--parallelism", type=int, default=4)
    parser.add_argument("--reports", type=Path, help="keep kosoku's reports in this directory")
    parser.add_argument("--doc", type=Path, default=REPO / "docs" / "conformance.md")
    args = parser.parse_args(argv)

    started = dt.datetime.now(dt.UTC)
    revision = source_revision()
    clock = time.monotonic()
    outdir = args.reports or Path(tempfile.mkdtemp(prefix="kosoku-"))
    outdir.mkdir(parents=True, exist_ok=True)
    try:
        server = start_server("socketspec-echo", [str(BIN / "socketspec-cluster"), *SERVER_ARGV])
    except ServerError as exc:
        print(f"conformance: {exc}", file=sys.stderr)
        return 2
    try:
        print(f"server pid {server.pid} at {server.url}", flush=True)
        code = run_kosoku(f"{server.host}:{server.port}", outdir, args.include, args.parallelism)
    finally:
        server_exit = server.stop()
    elapsed = time.monotonic() - clock
    if not (outdir / "index.json").is_file():
        print(f"conformance: kosoku exited {code} and wrote no index.json", file=sys.stderr)
        print(server.log_tail(), file=sys.stderr)
        return 2
    cases = load_results(outdir)
    args.doc.parent.mkdir(parents=True, exist_ok=True)
    args.doc.write_text(
        render(
            cases,
            include=args.include,
            started=started,
            elapsed=elapsed,
            parallelism=args.parallelism,
            revision=revision,
        )
    )
    counts = Counter(str(case.get("behavior")) for case in cases.values())
    failing = sorted(
        (
            case_id
            for case_id, case in cases.items()
            if case.get("behavior") in FAILING or case.get("behaviorClose") in FAILING
        ),
        key=case_key,
    )
    print(f"{len(cases)} cases: " + ", ".join(f"{s} {n}" for s, n in sorted(counts.items())))
    print(f"wrote {args.doc}; reports in {outdir}; server exited {server_exit}")
    if failing:
        print(f"conformance: failing cases: {', '.join(failing)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
