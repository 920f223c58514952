"""Run the whole Autobahn suite (kosoku) against the echo server; write docs/conformance.md.

    make conformance
    .venv/bin/python bench/conformance.py [--include '9.*'] [--reports DIR] [--doc PATH]
    .venv/bin/python bench/conformance.py --asgi

Starts ``socketspec-cluster --echo --compression --port 0``, runs kosoku with
``-p 4`` against it, stops the server, counts the cases by behavior and writes
the report. Exits 1 when a case FAILED (or closed WRONG CODE / UNCLEAN), 2 when
the run itself broke (no server, no index.json).

``--asgi`` runs sections 1 to 10 against the ASGI adapter's echo entry on uvicorn
(``bench/asgi_echo.py``), once per uvicorn WebSocket implementation, and rewrites only
the page's ASGI section; a cluster run keeps that section. Its exit code is 1 when a case
FAILED under every implementation.
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
ASGI_HEADING = "## Under the ASGI adapter on uvicorn"
ASGI_SECTIONS = ["1.*", "2.*", "3.*", "4.*", "5.*", "6.*", "7.*", "9.*", "10.*"]
# uvicorn's default first: with the websockets library installed, "auto" is websockets-sansio.
UVICORN_WS = ("websockets-sansio", "wsproto")
# Why a case is not OK under uvicorn: each is the server's WebSocket layer's doing, below
# the ASGI interface, where the application cannot reach.
ASGI_REASONS = {
    "early-fail": (
        "A valid message and, in the same read, a bad frame: the server's WebSocket layer "
        "parses the whole read and fails the connection on the bad frame before the "
        "application's echo of the message before it is sent (an ASGI application only "
        "sees a message through `receive()` and answers after). Autobahn prefers the echo "
        "first. Whether the echo leaves first depends on timing: a run may find some OK."
    ),
    "utf8-late": (
        "Invalid UTF-8 split over fragments: the websockets library checks UTF-8 when the "
        'message is complete, not frame by frame (no "fail fast"); wsproto checks each '
        "frame."
    ),
    "close-in-fragments": (
        "A Close between two fragments of a message: the websockets library's sans-I/O "
        'protocol answers 1002 "incomplete fragmented message", where RFC 6455 (5.4) '
        "lets control frames come between fragments and Autobahn expects the close answered "
        "with 1000; wsproto answers 1000."
    ),
    "informational": "As on the cluster: RFC 6455 has no right answer; reported, not judged.",
}


def asgi_reason(case_id: str) -> str:
    section = case_id.split(".")
    if case_id in ("7.1.6", "7.13.1", "7.13.2"):
        return "informational"
    if case_id == "7.1.5":
        return "close-in-fragments"
    if section[:2] == ["6", "4"]:
        return "utf8-late"
    if section[0] in ("3", "4", "5"):
        return "early-fail"
    return ""


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


def render_asgi(
    runs: dict[str, dict[str, dict[str, Any]]], *, started: dt.datetime, revision: str
) -> str:
    """The page's ASGI section: the counts per uvicorn WebSocket implementation, and each
    case that is not OK with the reason."""
    lines = [
        ASGI_HEADING,
        "",
        "Sections 1 to 10 against the ASGI adapter's echo entry "
        "(`socketspec.adapters.asgi.echo_app`) on uvicorn, once per uvicorn WebSocket "
        "implementation (`--ws`). Frames, UTF-8 checks and closes are the server's there, "
        "not the adapter's: these results are uvicorn's and its WebSocket library's.",
        "",
        f"- Date: {started:%Y-%m-%d %H:%M} UTC, server code: {revision}",
        f"- uvicorn {version('uvicorn')}, websockets {version('websockets')}, "
        f"wsproto {version('wsproto')}, h11 {version('h11')}, kosoku {version('kosoku')}, "
        f"Python {platform.python_version()}",
        "",
        "| uvicorn `--ws` | cases | " + " | ".join(STATUSES) + " |",
        "|---|---:|" + "---:|" * len(STATUSES),
    ]
    for impl, cases in runs.items():
        counts = Counter(str(case.get("behavior")) for case in cases.values())
        name = f"`{impl}`" + (" (uvicorn's default)" if impl == UVICORN_WS[0] else "")
        lines.append(
            f"| {name} | {len(cases)} | "
            + " | ".join(str(counts.get(status, 0)) for status in STATUSES)
            + " |"
        )
    lines += ["", "### Cases that are not OK under uvicorn", ""]
    odd: dict[str, dict[str, str]] = {}
    for impl, cases in runs.items():
        for case_id, case in cases.items():
            if case.get("behavior") != "OK" or case.get("behaviorClose") != "OK":
                odd.setdefault(case_id, {})[impl] = (
                    f"{case.get('behavior')} (close {case.get('behaviorClose')}, "
                    f"code {case.get('remoteCloseCode')})"
                )
    if not odd:
        lines.append("None.")
    else:
        lines += [
            "| case | " + " | ".join(f"`{impl}`" for impl in runs) + " | why |",
            "|---|" + "---|" * len(runs) + "---|",
        ]
        used: list[str] = []
        for case_id in sorted(odd, key=case_key):
            verdicts = [odd[case_id].get(impl, "OK") for impl in runs]
            reason = asgi_reason(case_id)
            if reason and reason not in used:
                used.append(reason)
            lines.append(
                f"| {case_id} | "
                + " | ".join(verdicts)
                + f" | {reason or 'not known: see the wire log in the report'} |"
            )
        lines.append("")
        lines += [f"- {reason}: {ASGI_REASONS[reason]}" for reason in used]
    lines += [
        "",
        "For a WebSocket layer with no FAILED case, run uvicorn with `--ws wsproto`. "
        "`tests/integration/adapters/test_conformance_uvicorn.py` runs these sections in "
        "`make test`; `make conformance-asgi` rewrites this section.",
        "",
    ]
    return "\n".join(lines)


def replace_asgi_section(doc: str, section: str) -> str:
    """``doc`` with its ASGI section (the last on the page) replaced by ``section``."""
    head, found, _ = doc.partition(ASGI_HEADING)
    return (head.rstrip("\n") + "\n\n" if found or head.strip() else head) + section


def asgi_section_of(doc: str) -> str:
    _, found, rest = doc.partition(ASGI_HEADING)
    return found + rest if found else ""


def main_asgi(args: argparse.Namespace) -> int:
    started = dt.datetime.now(dt.UTC)
    revision = source_revision()
    runs: dict[str, dict[str, dict[str, Any]]] = {}
    for impl in UVICORN_WS:
        outdir = (args.reports / impl) if args.reports else Path(tempfile.mkdtemp(prefix="kosoku-"))
        outdir.mkdir(parents=True, exist_ok=True)
        argv = [str(BIN / "python"), str(REPO / "bench" / "asgi_echo.py"), "--ws", impl]
        try:
            server = start_server(f"asgi-echo-{impl}", argv)
        except ServerError as exc:
            print(f"conformance: {exc}", file=sys.stderr)
            return 2
        try:
            print(f"uvicorn --ws {impl}: pid {server.pid} at {server.url}", flush=True)
            run_kosoku(f"{server.host}:{server.port}", outdir, ASGI_SECTIONS, args.parallelism)
        finally:
            server.stop()
        if not (outdir / "index.json").is_file():
            print(f"conformance: kosoku wrote no index.json for --ws {impl}", file=sys.stderr)
            return 2
        runs[impl] = load_results(outdir)
    doc = args.doc.read_text() if args.doc.is_file() else ""
    args.doc.write_text(
        replace_asgi_section(doc, render_asgi(runs, started=started, revision=revision))
    )
    failing = {
        impl: sorted(
            (
                case_id
                for case_id, case in cases.items()
                if case.get("behavior") in FAILING or case.get("behaviorClose") in FAILING
            ),
            key=case_key,
        )
        for impl, cases in runs.items()
    }
    for impl, cases in failing.items():
        print(f"--ws {impl}: {len(runs[impl])} cases, failing: {', '.join(cases) or 'none'}")
    print(f"wrote the ASGI section of {args.doc}")
    return 1 if all(failing.values()) else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "-i", "--include", action="append", default=[], help="kosoku case glob (repeatable)"
    )
    parser.add_argument("-p", "--parallelism", type=int, default=4)
    parser.add_argument("--reports", type=Path, help="keep kosoku's reports in this directory")
    parser.add_argument("--doc", type=Path, default=REPO / "docs" / "conformance.md")
    parser.add_argument(
        "--asgi", action="store_true", help="sections 1-10 against the ASGI adapter on uvicorn"
    )
    args = parser.parse_args(argv)
    if args.asgi:
        return main_asgi(args)

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
    page = render(
        cases,
        include=args.include,
        started=started,
        elapsed=elapsed,
        parallelism=args.parallelism,
        revision=revision,
    )
    # The ASGI section comes from its own run (--asgi): keep it.
    kept = asgi_section_of(args.doc.read_text()) if args.doc.is_file() else ""
    args.doc.write_text(replace_asgi_section(page, kept) if kept else page)
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
