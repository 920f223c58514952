"""The results of bench/run.py: the JSON file, the markdown tables and the charts.

- ``summarise``: medians (and min, max) over the runs of each workload and server;
- ``markdown``: socketspec beside each peer (medians, and socketspec's value divided by
  the peer's; the ``bare`` peer is the floor, labelled "bare uvloop (floor)"), the 1- and
  2-shard broadcast, and the state of every run (the generator's CPU, saturation,
  failures, missing or extra deliveries);
- ``draw_charts``: PNG bar charts with matplotlib (the ``bench`` extra): medians, with the
  spread of the runs as error bars;
- ``write``: bench/results/<date>.json and .md, latest.md, the charts, and the part of
  docs/performance.md between its result markers (the rest of that page is left alone).
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

PEERS = ("picows", "websockets", "python-socketio", "fastapi", "bare")
FLOOR = "bare"  # a reference, not a product: what Python and uvloop cost with nothing else
LABELS = {FLOOR: "bare uvloop (floor)"}
DISTURBED = 0.25  # cores busy outside the server and the generator: the run is disturbed
BEGIN = "<!-- bench-results:begin -->"
END = "<!-- bench-results:end -->"
# A run of the capacity workload alone (make bench-capacity) has its own part of the page.
CAPACITY_BEGIN = "<!-- bench-capacity:begin -->"
CAPACITY_END = "<!-- bench-capacity:end -->"

# (workload, metric, label, higher is better)
MEASURES: list[tuple[str, str, str, bool]] = [
    ("echo", "messages_per_s", "messages/s", True),
    ("echo", "server_cpu_us_per_message", "server µs CPU / message", False),
    ("latency", "latency_p50_ms", "round trip p50 (ms)", False),
    ("latency", "latency_p99_ms", "round trip p99 (ms)", False),
    ("latency", "server_cpu_us_per_message", "server µs CPU / message", False),
    ("broadcast", "deliveries_per_s", "deliveries/s", True),
    ("broadcast", "latency_p50_ms", "delivery latency p50 (ms)", False),
    ("broadcast", "latency_p99_ms", "delivery latency p99 (ms)", False),
    ("broadcast", "server_cpu_us_per_delivery", "server µs CPU / delivery", False),
    ("fanout", "latency_p50_ms", "delivery latency p50 (ms)", False),
    ("fanout", "latency_p99_ms", "delivery latency p99 (ms)", False),
    ("fanout", "server_cpu_us_per_delivery", "server µs CPU / delivery", False),
    ("idle", "kib_per_connection", "KiB / connection", False),
]
SHARD_MEASURES = [
    ("deliveries_per_s", "deliveries/s", 0),
    ("broadcasts_per_s", "broadcasts/s", 0),
    ("server_cpu_us_per_delivery", "server µs CPU / delivery", 2),
    ("latency_p50_ms", "latency p50 (ms)", 1),
    ("latency_p99_ms", "latency p99 (ms)", 1),
    ("server_cpu_utilization", "server CPU busy (cores)", 2),
    ("generator_cpu_utilization", "generator CPU busy (cores)", 2),
]
# (metric, label, digits) of the capacity workload, one column per level
CAPACITY_MEASURES = [
    ("shards", "shards", 0),
    ("members", "members connected and joined", 0),
    ("connections_per_s", "connect rate (upgrade, greeting, join, ack) /s", 0),
    ("server_cpu_us_per_connection", "server µs CPU / connection opened", 0),
    ("server_kib_per_connection", "server resident KiB / connection", 2),
    ("kernel_kib_per_connection", "kernel KiB / connection (slab, TCP buffers)", 2),
    ("kib_per_connection", "KiB / connection, server + kernel", 2),
    ("first_delivery_ms", "one broadcast: first member (ms)", 1),
    ("last_delivery_ms", "one broadcast: last member (ms)", 1),
    ("first_to_last_ms", "one broadcast: first to last (ms)", 1),
    ("latency_p50_ms", "delivery latency p50 (ms)", 1),
    ("latency_p99_ms", "delivery latency p99 (ms)", 1),
    ("server_cpu_us_per_delivery", "server µs CPU / delivery", 2),
    ("generator_cpu_us_per_delivery", "generator µs CPU / delivery", 2),
    ("generator_cpu_utilization", "generator CPU busy while delivering (cores)", 2),
]
COUNTED = (
    "failed_connections",
    "failed_members",
    "missing_deliveries",
    "extra_deliveries",
    "members_lost",
    "server_closes",
    "unparsed_stamps",
)


def workload_titles(options: dict[str, Any]) -> dict[str, str]:
    return {
        "echo": f"echo throughput ({options['connections']} connections × "
        f"{options['inflight']} in flight)",
        "latency": "echo latency (1 connection, 1 in flight)",
        "broadcast": f"room broadcast ({options['members']:,} members, as fast as accepted)",
        "fanout": f"broadcast fan-out ({options['members']:,} members, "
        f"{options['rate']:g} broadcasts/s)",
        "idle": f"idle memory ({options['idle']:,} connections)",
    }


# -- summary --------------------------------------------------------------------------------------


def key_of(record: dict[str, Any]) -> str:
    key = f"{record['workload']}/{record['server']}"
    if "level" in record:  # the capacity workload: one entry per number of members
        return f"{key}/{record['level']}"
    return key + (f"/{record['shards']}" if "shards" in record else "")


def summarise(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per workload/server[/shards]: median, min and max of every number over the runs
    without an error, and the runs' problems."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        groups.setdefault(key_of(record), []).append(record)
    summary: dict[str, dict[str, Any]] = {}
    for key, runs in groups.items():
        good = [r for r in runs if "error" not in r]
        numbers: dict[str, list[float]] = {}
        for record in good:
            for name, value in record.items():
                if isinstance(value, int | float) and not isinstance(value, bool):
                    numbers.setdefault(name, []).append(value)
        entry: dict[str, Any] = {
            "runs": len(runs),
            "good_runs": len(good),
            "median": {name: statistics.median(values) for name, values in numbers.items()},
            "min": {name: min(values) for name, values in numbers.items()},
            "max": {name: max(values) for name, values in numbers.items()},
            "saturated_runs": sum(1 for r in runs if r.get("generator_saturated")),
            "problems": problems(runs),
        }
        summary[key] = entry
    return summary


def problems(runs: list[dict[str, Any]]) -> list[str]:
    found = []
    for record in runs:
        where = f"run {record.get('run')}"
        if "error" in record:
            found.append(f"{where}: {str(record['error'])[:160]}")
        for name in COUNTED:
            if record.get(name):
                found.append(f"{where}: {name} {record[name]}")
        if record.get("drained") is False:
            found.append(f"{where}: not drained")
        if record.get("errors"):
            found.append(
                f"{where}: {len(record['errors'])} errors, the first: "
                f"{str(record['errors'][0])[:120]}"
            )
        if record.get("server_exit") not in (0, None, -15):
            found.append(f"{where}: server exit {record['server_exit']}")
    return found


# -- markdown -------------------------------------------------------------------------------------


def number(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "–"
    return f"{value:,.{digits}f}"


def digits_for(value: float | None) -> int:
    if value is None or value >= 100:
        return 0
    return 1 if value >= 10 else 2 if value >= 1 else 3


def ratio(value: float | None, base: float | None) -> str:
    if value is None or not base:
        return "–"
    return f"{value / base:.2f}×"


def display(server: str) -> str:
    return LABELS.get(server, server)


def median_of(summary: dict[str, Any], key: str, metric: str) -> float | None:
    entry = summary.get(key)
    return None if entry is None else entry["median"].get(metric)


def comparison_table(meta: dict[str, Any], summary: dict[str, Any]) -> list[str]:
    servers = list(meta["servers"])
    peers = [name for name in servers if name in PEERS]
    titles = workload_titles(meta["options"])
    lines = [
        "| workload | measure | " + " | ".join(display(name) for name in servers) + " |",
        "|---|---|" + "---:|" * len(servers),
    ]
    for workload, metric, label, higher in MEASURES:
        if workload not in meta["workloads"]:
            continue
        ours = median_of(summary, f"{workload}/socketspec", metric)
        cells = []
        for name in servers:
            value = median_of(summary, f"{workload}/{name}", metric)
            text = number(value, digits_for(value))
            if name in peers and "socketspec" in servers:
                text += f" ({ratio(ours, value)})"
            cells.append(text)
        better = "more is better" if higher else "less is better"
        lines.append(f"| {titles[workload]} | {label}, {better} | " + " | ".join(cells) + " |")
    return lines


def shards_table(meta: dict[str, Any], summary: dict[str, Any]) -> list[str]:
    counts = meta["shards"]
    lines = [
        "| measure | " + " | ".join(f"{n} shard" + ("s" if n > 1 else "") for n in counts) + " |",
        "|---|" + "---:|" * len(counts),
    ]
    base = counts[0]
    for metric, label, digits in SHARD_MEASURES:
        cells = []
        first = median_of(summary, f"shards/socketspec/{base}", metric)
        for n in counts:
            value = median_of(summary, f"shards/socketspec/{n}", metric)
            text = number(value, digits)
            if n != base and metric not in ("server_cpu_utilization", "generator_cpu_utilization"):
                text += f" ({ratio(value, first)})"
            cells.append(text)
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def capacity_levels(summary: dict[str, Any]) -> list[int]:
    return sorted(int(key.split("/")[2]) for key in summary if key.startswith("capacity/"))


def capacity_table(meta: dict[str, Any], summary: dict[str, Any]) -> list[str]:
    levels = capacity_levels(summary)
    lines = [
        "| measure | " + " | ".join(f"{n:,} members" for n in levels) + " |",
        "|---|" + "---:|" * len(levels),
    ]
    for metric, label, digits in CAPACITY_MEASURES:
        cells = [
            number(median_of(summary, f"capacity/socketspec/{n}", metric), digits) for n in levels
        ]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def runs_table(meta: dict[str, Any], summary: dict[str, Any]) -> list[str]:
    lines = [
        "| workload | server | runs | generator CPU busy (median, max) | saturated runs "
        "| server CPU busy | rest of the machine busy | problems |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for key, entry in summary.items():
        parts = key.split("/")
        workload, server = parts[0], display(parts[1])
        if workload == "capacity":
            server += f", {int(parts[2]):,} members"
        elif len(parts) == 3:
            server += f", {parts[2]} shard" + ("s" if parts[2] != "1" else "")
        found = entry["problems"]
        shown = "; ".join(found[:3]) + (f" (+{len(found) - 3})" if len(found) > 3 else "")
        lines.append(
            f"| {workload} | {server} | {entry['good_runs']}/{entry['runs']} "
            f"| {number(entry['median'].get('generator_cpu_utilization'), 2)}, "
            f"{number(entry['max'].get('generator_cpu_utilization'), 2)} "
            f"| {entry['saturated_runs']} "
            f"| {number(entry['median'].get('server_cpu_utilization'), 2)} "
            f"| {number(entry['median'].get('other_cpu_utilization'), 2)} "
            f"| {shown or 'none'} |"
        )
    return lines


def _run_line(
    meta: dict[str, Any], options: dict[str, Any], placement: str, m: dict[str, Any]
) -> list[str]:
    return [
        f"{meta['started'][:16].replace('T', ' ')} UTC; `{meta['command']}`; "
        f"socketspec at {meta['socketspec_source']}; medians over {meta['runs']} run"
        + ("s" if meta["runs"] > 1 else "")
        + f" of {options['duration']:g} s measured (after {options['warmup']:g} s of warm-up), "
        f"a fresh server per run; {placement}. Machine: {m.get('cores')} cores, "
        f"{m.get('cpu', 'unknown CPU')}, Linux {m.get('kernel')}, Python {m.get('python')}. "
        f"The whole run took {meta.get('seconds', 0) / 60:.1f} minutes.",
        "",
    ]


def results_markdown(meta: dict[str, Any], summary: dict[str, Any], title: bool) -> str:
    """The results part: shared by the results file and docs/performance.md."""
    options = meta["options"]
    pinned = meta.get("pinned")
    placement = (
        f"server on core {pinned['server']}, load generator on core {pinned['generator']} "
        "(clusters of 2 shards: server on every core)"
        if pinned
        else "nothing pinned"
    )
    m = meta["machine"]
    lines = []
    if title:
        lines += ["# Benchmark results", ""]
    saturated = [key for key, entry in summary.items() if entry["saturated_runs"]]
    failing = [key for key, entry in summary.items() if entry["problems"]]
    if meta.get("smoke"):
        lines += ["**Smoke run**: small and short, functional only; not a measurement.", ""]
    if saturated:
        lines += [
            "**Generator saturated** (0.90 of its core or more) in some runs of: "
            + ", ".join(saturated)
            + ": there the generator, not the server, may have set the pace.",
            "",
        ]
    busy = [
        (entry["median"]["other_cpu_utilization"], key)
        for key, entry in summary.items()
        if entry["median"].get("other_cpu_utilization") is not None
    ]
    if busy and max(busy)[0] > DISTURBED:
        lines += [
            f"**Disturbed run**: other work kept up to {max(busy)[0]:.2f} cores busy during "
            f'the measured windows (the median of {max(busy)[1]}; column "rest of the '
            'machine busy" at the end): rates are then lower than on a quiet machine; '
            "server CPU per message or delivery is affected less.",
            "",
        ]
    if failing:
        lines += ["**Problems** in: " + ", ".join(failing) + " (table at the end).", ""]
    if set(meta["workloads"]) == {"capacity"}:
        lines += [
            f"{meta['started'][:16].replace('T', ' ')} UTC; `{meta['command']}`; "
            f"socketspec at {meta['socketspec_source']}; {meta['runs']} run"
            + ("s" if meta["runs"] > 1 else "")
            + f", nothing pinned. Machine: {m.get('cores')} cores, "
            f"{m.get('cpu', 'unknown CPU')}, Linux {m.get('kernel')}, Python {m.get('python')}. "
            f"The whole run took {meta.get('seconds', 0) / 60:.1f} minutes.",
        ]
    else:
        lines += _run_line(meta, options, placement, m)
    compared = any(workload in meta["workloads"] for workload, *_ in MEASURES)
    if compared:
        lines += [
            "In a peer's column, the ratio is socketspec's value divided by the peer's "
            "(above 1.00× is better for socketspec where more is better, below 1.00× where "
            "less is better). Server CPU is user + system over the server's whole process tree "
            "(/proc), over the measured window, divided by the messages or deliveries in it.",
            "",
        ]
        if FLOOR in meta["servers"]:
            lines += [
                f"{display(FLOOR)} is a reference, not a product: the same app on a bare uvloop "
                "`asyncio.Protocol` with just enough WebSocket for the load generator (its own "
                "upgrade and frame parser, orjson; no validation, limits, backpressure or "
                "timeouts; bench/peers/bare_app.py): the floor for Python on this machine. Its "
                "ratio too is socketspec's value divided by its own.",
                "",
            ]
        lines += comparison_table(meta, summary)
    if "shards" in meta["workloads"] and "socketspec" in meta["servers"]:
        lines += [
            "",
            f"Cross-shard room broadcast (socketspec only; {options['members']:,} members, "
            "the sender on a shard other than the room's home when there are two; ratios to "
            "1 shard):",
            "",
            *shards_table(meta, summary),
        ]
    if capacity_levels(summary):
        reasons = meta.get("capacity_notes", [])
        lines += [
            "",
            "Capacity (socketspec only; `--workloads capacity`): one room of every member, "
            "a fresh cluster per level, the members opened by several generator processes "
            "from their own loopback addresses, then one broadcast at a time to all of them "
            "(medians over the broadcasts and the runs; latency percentiles over every "
            "delivery). Kernel memory is half the machine's slab and TCP buffer growth (both "
            "ends of each connection are on this machine). Nothing pinned: the shards and "
            "the generator share both cores, so the generator's CPU is in the times.",
            "",
            *capacity_table(meta, summary),
        ]
        if reasons:
            lines += ["", "More shards than asked: " + "; ".join(reasons) + "."]
    lines += ["", "Runs:", "", *runs_table(meta, summary), ""]
    found = meta["versions"]
    if set(meta["workloads"]) == {"capacity"}:
        found = {"socketspec": found.get("socketspec", {})}
    lines += ["Versions: " + versions_line(found), ""]
    return "\n".join(lines)


def versions_line(found: dict[str, Any]) -> str:
    keep = {
        "socketspec": ("socketspec", "uvloop", "orjson", "wsproto"),
        "picows": ("picows", "uvloop", "orjson"),
        "websockets": ("websockets", "uvloop", "orjson"),
        "python-socketio": ("python-socketio", "python-engineio", "uvicorn", "websockets"),
        "fastapi": ("fastapi", "starlette", "uvicorn", "websockets"),
        FLOOR: ("uvloop", "orjson"),
    }
    parts = []
    for server, names in keep.items():
        installed = found.get(server)
        if installed:
            parts.append(
                f"{display(server)}: "
                + ", ".join(f"{name} {installed[name]}" for name in names if name in installed)
            )
    return "; ".join(parts) + "."


# -- charts ---------------------------------------------------------------------------------------

COLOURS = {
    "socketspec": "#2b6cb0",
    "picows": "#c05621",
    "websockets": "#9c9c9c",
    "python-socketio": "#d69e2e",
    "fastapi": "#38a169",
    FLOOR: "#e2e8f0",
}
FLOOR_HATCH = "///"


def tick(server: str) -> str:
    """A server's name under its bar: the floor's label on two lines."""
    return display(server).replace(" (", "\n(").replace("python-", "python-\n")


def mark_floor(patches: Any, names: list[str]) -> None:
    """The floor's bars hatched and outlined: a reference, not one of the compared."""
    for patch, name in zip(patches, names, strict=True):
        if name == FLOOR:
            patch.set_hatch(FLOOR_HATCH)
            patch.set_edgecolor("#4a5568")


def draw_charts(meta: dict[str, Any], summary: dict[str, Any], docs: Path) -> list[Path]:
    """docs/perf-{echo,broadcast,memory,latency}.png; none without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    servers = meta["servers"]
    titles = workload_titles(meta["options"])
    written: list[Path] = []

    def bars(axis: Any, workload: str, metric: str, label: str) -> None:
        names, values, low, high = [], [], [], []
        for name in servers:
            entry = summary.get(f"{workload}/{name}")
            if entry is None or metric not in entry["median"]:
                continue
            median = entry["median"][metric]
            names.append(name)
            values.append(median)
            low.append(median - entry["min"][metric])
            high.append(entry["max"][metric] - median)
        patches = axis.bar(
            [tick(n) for n in names],
            values,
            color=[COLOURS.get(n, "#777") for n in names],
            yerr=[low, high],
            capsize=4,
        )
        mark_floor(patches, names)
        for index, value in enumerate(values):
            axis.annotate(
                number(value, digits_for(value)),
                (index, value + high[index]),  # above the error bar
                ha="center",
                va="bottom",
                fontsize=8,
                xytext=(0, 2),
                textcoords="offset points",
            )
        axis.set_ylabel(label)
        axis.tick_params(axis="x", labelsize=8)
        axis.spines[["top", "right"]].set_visible(False)

    def grouped(axis: Any, workload: str, title: str) -> None:
        names = [n for n in servers if f"{workload}/{n}" in summary]
        width = 0.38
        for offset, (metric, which, alpha) in enumerate(
            (("latency_p50_ms", "p50", 1.0), ("latency_p99_ms", "p99", 0.55))
        ):
            values = [summary[f"{workload}/{n}"]["median"].get(metric, 0) for n in names]
            places = [i + (offset - 0.5) * width for i in range(len(names))]
            for place, value in zip(places, values, strict=True):
                axis.annotate(
                    number(value, digits_for(value)),
                    (place, value),
                    ha="center",
                    va="bottom",
                    fontsize=7,
                    xytext=(0, 1),
                    textcoords="offset points",
                )
            patches = axis.bar(
                places,
                values,
                width,
                label=which,
                color=[COLOURS.get(n, "#777") for n in names],
                alpha=alpha,
                edgecolor="black",
                linewidth=0.3,
            )
            mark_floor(patches, names)
        axis.set_xticks(range(len(names)), [tick(n) for n in names], fontsize=8)
        axis.set_ylabel("ms (left p50, right p99)")
        axis.set_title(title, fontsize=9)
        axis.spines[["top", "right"]].set_visible(False)

    footer = (
        f"medians of {meta['runs']} runs (error bars: min–max); {meta['started'][:10]}; "
        f"socketspec at {meta['socketspec_source']}"
    )

    def save(figure: Any, name: str, title: str) -> None:
        figure.suptitle(title, fontsize=11)
        figure.text(0.5, 0.005, footer, ha="center", fontsize=7, color="#555")
        figure.tight_layout(rect=(0, 0.03, 1, 0.95))
        path = docs / name
        figure.savefig(path, dpi=110)
        plt.close(figure)
        written.append(path)

    workloads = meta["workloads"]
    if "echo" in workloads:
        figure, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8))
        bars(left, "echo", "messages_per_s", "messages/s (more is better)")
        bars(right, "echo", "server_cpu_us_per_message", "server µs CPU / message (less is better)")
        save(figure, "perf-echo.png", titles["echo"])
    if "broadcast" in workloads or "shards" in workloads:
        figure, axes = plt.subplots(2, 2, figsize=(11, 7.4))
        if "broadcast" in workloads:
            bars(axes[0][0], "broadcast", "deliveries_per_s", "deliveries/s (more is better)")
            bars(
                axes[0][1],
                "broadcast",
                "server_cpu_us_per_delivery",
                "server µs CPU / delivery (less is better)",
            )
            axes[0][0].set_title(titles["broadcast"], fontsize=9)
        if "shards" in workloads:
            for axis, metric, label in (
                (axes[1][0], "deliveries_per_s", "deliveries/s"),
                (axes[1][1], "server_cpu_us_per_delivery", "server µs CPU / delivery"),
            ):
                names, values = [], []
                for n in meta["shards"]:
                    value = median_of(summary, f"shards/socketspec/{n}", metric)
                    if value is not None:
                        names.append(f"socketspec\n{n} shard" + ("s" if n > 1 else ""))
                        values.append(value)
                axis.bar(names, values, color=COLOURS["socketspec"])
                for index, value in enumerate(values):
                    axis.annotate(
                        number(value, digits_for(value)),
                        (index, value),
                        ha="center",
                        va="bottom",
                        fontsize=8,
                        xytext=(0, 2),
                        textcoords="offset points",
                    )
                axis.set_ylabel(label)
                axis.spines[["top", "right"]].set_visible(False)
            axes[1][0].set_title("cross-shard broadcast (socketspec)", fontsize=9)
        save(figure, "perf-broadcast.png", "Room broadcast")
    if "idle" in workloads:
        figure, axis = plt.subplots(figsize=(7, 3.8))
        bars(axis, "idle", "kib_per_connection", "KiB / idle connection (less is better)")
        save(figure, "perf-memory.png", titles["idle"])
    present = [w for w in ("latency", "broadcast", "fanout") if w in workloads]
    if present:
        figure, axes = plt.subplots(1, len(present), figsize=(5 * len(present), 4))
        for axis, workload in zip(axes if len(present) > 1 else [axes], present, strict=True):
            grouped(axis, workload, titles[workload])
        save(figure, "perf-latency.png", "Latency p50 / p99 (less is better)")
    return written


# -- files ----------------------------------------------------------------------------------------


def write(
    meta: dict[str, Any],
    records: list[dict[str, Any]],
    out: Path,
    docs: Path,
    *,
    smoke: bool,
    charts: bool,
) -> list[Path]:
    """Every output file; returns the paths written."""
    summary = summarise(records)
    out.mkdir(parents=True, exist_ok=True)
    stem = ("smoke-" if smoke else "") + meta["started"][:16].replace(":", "").replace("T", "-")
    written = []
    data = out / f"{stem}.json"
    data.write_text(json.dumps({**meta, "records": records, "summary": summary}, indent=1) + "\n")
    written.append(data)
    text = results_markdown(meta, summary, title=True)
    page = out / f"{stem}.md"
    page.write_text(text)
    written.append(page)
    if smoke:
        return written
    capacity_only = set(meta["workloads"]) == {"capacity"}
    latest = out / ("capacity-latest.md" if capacity_only else "latest.md")
    latest.write_text(text)
    written.append(latest)
    if charts:
        written += draw_charts(meta, summary, docs)
    begin, end = (CAPACITY_BEGIN, CAPACITY_END) if capacity_only else (BEGIN, END)
    performance = docs / "performance.md"
    if performance.exists():
        current = performance.read_text()
        if begin in current and end in current:
            head, rest = current.split(begin, 1)
            _, tail = rest.split(end, 1)
            body = results_markdown(meta, summary, title=False)
            performance.write_text(f"{head}{begin}\n{body}\n{end}{tail}")
            written.append(performance)
    return written
