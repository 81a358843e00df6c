"""The benchmark's tables (rich) and its JSON file."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

TARGETS: dict[str, tuple[str, Callable[[float], bool]]] = {
    "orders_vs_pgbench": ("≥ 0.50", lambda v: v >= 0.5),
    "orders_half_p99_ms": ("≤ 50 ms", lambda v: v <= 50),
    "product_vs_bare": ("≥ 0.70", lambda v: v >= 0.7),
    "jobs_per_s": ("≥ 1,000", lambda v: v >= 1000),
    "api_peak_rss_mb": ("< 200 MB", lambda v: v < 200),
    "serve_ready_s": ("< 5 s", lambda v: v < 5),
    "flag_eval_us": ("< 10 µs", lambda v: v < 10),
    "orders_worker_vs_pgbench": ("≥ 0.50", lambda v: v >= 0.5),
    "orders_worker_half_p99_ms": ("≤ 50 ms", lambda v: v <= 50),
    "orders_serve_vs_pgbench": ("—", lambda v: True),
    "orders_serve_half_p99_ms": ("≤ 50 ms", lambda v: v <= 50),
    "pay_vs_bare_asyncpg": ("—", lambda v: True),
    "orders_recording_off_vs_pgbench": ("—", lambda v: True),
    "orders_recording_off_half_p99_ms": ("—", lambda v: True),
    "orders_recording_ratio_cost": ("—", lambda v: True),
    "orders_recording_cpu_ms": ("—", lambda v: True),
}


def _lat(section: dict[str, Any] | None) -> str:
    if not section:
        return ""
    return f"{section['p50_ms']:.1f} / {section['p95_ms']:.1f} / {section['p99_ms']:.1f}"


def _verdict(key: str, value: float | None) -> tuple[str, str]:
    target, check = TARGETS[key]
    if value is None:
        return target, "[yellow]n/a[/]"
    if target == "—":
        return target, ""
    return target, "[green]yes[/]" if check(value) else "[red]no[/]"


def render(results: dict[str, Any], console: Console) -> None:
    """Print the measurements, the §9 ratios, the pgbench transaction and any phase errors."""
    m = results.get("measurements", {})
    table = Table(title="orderly bench — measurements", title_justify="left")
    table.add_column("measurement")
    table.add_column("throughput", justify="right")
    table.add_column("p50 / p95 / p99 ms", justify="right")
    table.add_column("notes")

    def row(name: str, key: str, unit: str, value_key: str, notes: str = "") -> None:
        section = m.get(key)
        if not section:
            table.add_row(name, "[yellow]not run[/]", "", results.get("errors", {}).get(key, ""))
            return
        value = section[value_key]
        note = notes or section.get("tool", "")
        if "server_cpu_ms_per_request" in section:
            note += f"; server CPU {section['server_cpu_ms_per_request']:.2f} ms/req"
        if "worker_cpu_ms_per_request" in section:
            note += f"; worker CPU {section['worker_cpu_ms_per_request']:.2f} ms/req"
        if "client_cpu_ms_per_request" in section:
            note += f"; Python CPU {section['client_cpu_ms_per_request']:.2f} ms/tx"
        if "jobs_queued_after" in section:
            note += f"; {section['jobs_queued_after']:,} jobs queued after"
        if "slo_requests_recorded" in section:
            note += f"; {section['slo_requests_recorded']:,} requests recorded for SLOs"
        others = {k: v for k, v in section.get("statuses", {}).items() if not k.startswith("2")}
        if others or section.get("socket_errors"):
            note += f" [yellow]non-2xx {others}, socket errors {section.get('socket_errors', 0)}[/]"
        table.add_row(name, f"{value:,.0f} {unit}", _lat(section), note)

    row(
        "pgbench: order transaction (ceiling)",
        "pgbench",
        "tps",
        "tps",
        f"{m['pgbench']['clients']} clients, -M prepared" if m.get("pgbench") else "",
    )
    passes = (
        ("orders", ""),
        ("orders_recording_off", ", recording off"),
        ("orders_worker", " + worker"),
        ("orders_serve", " on serve"),
    )
    for key, title in passes:
        if key != "orders" and key not in m and key not in results.get("errors", {}):
            continue  # an optional pass that was not selected
        row(f"POST /v1/orders{title}, max throughput", key, "rps", "ok_rps")
        half = m.get(f"{key}_half")
        if half:
            note = half.get("tool", "")
            if "server_cpu_ms_per_request" in half:
                note += f"; server CPU {half['server_cpu_ms_per_request']:.2f} ms/req"
            table.add_row(
                f"POST /v1/orders{title} at half throughput",
                f"{half['ok_rps']:,.0f} rps (target {half['target_rps']:,.0f})",
                _lat(half),
                note,
            )
        else:
            row(f"POST /v1/orders{title} at half throughput", f"{key}_half", "rps", "ok_rps")
    if "pay" in m or "pay_bare" in m or "pay" in results.get("errors", {}):
        row("pay with credits: bare asyncpg replay (reference)", "pay_bare", "tps", "tps")
        row("POST /v1/orders/{id}/pay (credits)", "pay", "rps", "ok_rps")
    row("GET /v1/products/{id} (orderly)", "product", "rps", "ok_rps")
    row("GET /v1/products/{id} (bare FastAPI)", "bare", "rps", "ok_rps")
    jobs = m.get("jobs")
    if jobs:
        table.add_row(
            "job drain, 1 worker process",
            f"{jobs['jobs_per_s']:,.0f} jobs/s",
            "",
            f"{jobs['jobs']:,} no-op jobs in {jobs['seconds']:.2f} s "
            f"(batch {jobs['batch_size']}, concurrency {jobs['concurrency']})",
        )
    else:
        table.add_row(
            "job drain, 1 worker process",
            "[yellow]not run[/]",
            "",
            results.get("errors", {}).get("jobs", ""),
        )
    flags = m.get("flags")
    table.add_row(
        "flag evaluation (in process)",
        f"{flags['us_per_flag']:.2f} µs/flag" if flags else "[yellow]not run[/]",
        "",
        "yggdrasil over its C ABI, context encoded once"
        if flags
        else results.get("errors", {}).get("flags", ""),
    )
    console.print(table)

    ratios = results.get("ratios", {})
    summary = Table(title="PRODUCT.md §9 targets", title_justify="left")
    summary.add_column("target")
    summary.add_column("measured", justify="right")
    summary.add_column("wanted", justify="right")
    summary.add_column("met", justify="center")
    labels = {
        "orders_vs_pgbench": "POST /v1/orders rps ÷ pgbench tps",
        "orders_half_p99_ms": "p99 at half the max order throughput",
        "product_vs_bare": "GET product rps ÷ bare FastAPI rps",
        "jobs_per_s": "no-op jobs drained per worker process",
        "api_peak_rss_mb": "API process peak RSS under load",
        "serve_ready_s": "`orderly serve` ready, fresh embedded data dir",
        "flag_eval_us": "flag evaluation in process, per flag",
        "orders_worker_vs_pgbench": "POST /v1/orders + worker rps ÷ pgbench tps",
        "orders_worker_half_p99_ms": "p99 at half (+ worker)",
        "orders_serve_vs_pgbench": "POST /v1/orders on serve rps ÷ pgbench tps",
        "orders_serve_half_p99_ms": "p99 at half (serve)",
        "pay_vs_bare_asyncpg": "POST …/pay rps ÷ same transaction on bare asyncpg",
        "orders_recording_off_vs_pgbench": "POST /v1/orders, recording off, rps ÷ pgbench tps",
        "orders_recording_off_half_p99_ms": "p99 at half (recording off)",
        "orders_recording_ratio_cost": "ratio given up to recording (off − on)",
        "orders_recording_cpu_ms": "API CPU per order spent recording (on − off), ms",
    }
    optional = set(list(labels)[7:])
    for key, label in labels.items():
        value = ratios.get(key)
        if value is None and key in optional:
            continue
        wanted, met = _verdict(key, value)
        shown = "" if value is None else (f"{value:.2f}" if value < 100 else f"{value:,.0f}")
        summary.add_row(label, shown, wanted, met)
    console.print(summary)

    script = results.get("pgbench_transaction")
    if script:
        tx = Table(
            title="pgbench transaction = the statements one POST /v1/orders ran (recorded)",
            title_justify="left",
        )
        tx.add_column("#", justify="right")
        tx.add_column("statement")
        for i, statement in enumerate(script["statements"], 1):
            tx.add_row(str(i), statement)
        for note in script["excluded"]:
            tx.add_row("–", f"[dim]not in pgbench: {note}[/]")
        console.print(tx)

    pay = results.get("pay_transaction")
    if pay:
        tx = Table(
            title="pay replay = the statements one POST /v1/orders/{id}/pay ran (recorded)",
            title_justify="left",
        )
        tx.add_column("#", justify="right")
        tx.add_column("statement")
        for i, statement in enumerate(pay["statements"], 1):
            tx.add_row(str(i), statement)
        for note in pay["excluded"]:
            tx.add_row("–", f"[dim]not replayed: {note}[/]")
        console.print(tx)

    for key, profile in results.get("profile", {}).items():
        for kind in ("self", "cumulative"):
            table = Table(
                title=f"py-spy, API process, {key} pass: top frames by {kind} time "
                f"({profile['samples']:,} samples)",
                title_justify="left",
            )
            table.add_column("%", justify="right")
            table.add_column("frame")
            for frame, share in profile[kind]:
                table.add_row(f"{share:.1f}", frame)
            console.print(table)

    env = results.get("environment", {})
    if env:
        console.print(
            "[dim]" + "; ".join(f"{k}: {v}" for k, v in env.items()) + "[/]", highlight=False
        )
    for phase, message in results.get("errors", {}).items():
        console.print(f"[red]{phase} failed:[/] {message}", highlight=False)


_SPINE = {"Runner.run", "BaseEventLoop._run_once", "Handle._run", "_worker"}


def top_frames(folded: str, limit: int = 15) -> dict[str, Any]:
    """Self and cumulative share of samples per frame, from py-spy's folded (raw) stacks.

    Cumulative counts a frame once per sample however deep it recurses. Thread
    and process roots and the frames down to the event loop's dispatch are left
    out; idle samples are not in py-spy's output (py-spy counts a thread as busy
    when it is runnable, so on a saturated machine these are shares of busy
    samples, not of CPU time).
    """
    self_counts: dict[str, int] = {}
    cumulative: dict[str, int] = {}
    total = 0
    for line in folded.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [f for f in stack.split(";") if f and not f.startswith(("process ", "thread "))]
        # Cut the spine every sample shares (interpreter start, CLI, event loop, thread
        # pool): cumulative shares then start at the callback or task that ran.
        cut = max((i for i, f in enumerate(frames) if f.split(" (")[0] in _SPINE), default=-1)
        frames = frames[cut + 1 :] or frames[-1:]
        if not frames:
            continue
        total += count
        self_counts[frames[-1]] = self_counts.get(frames[-1], 0) + count
        for frame in set(frames):
            cumulative[frame] = cumulative.get(frame, 0) + count

    def top(counts: dict[str, int]) -> list[list[Any]]:
        ranked = sorted(counts.items(), key=lambda kv: kv[1], reverse=True)[:limit]
        return [[frame, round(100 * n / total, 1)] for frame, n in ranked] if total else []

    return {"samples": total, "self": top(self_counts), "cumulative": top(cumulative)}


def write_json(results: dict[str, Any], path: Path) -> None:
    """Write the full results as JSON."""
    path.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n", encoding="utf-8")
