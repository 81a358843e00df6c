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
}


def _lat(section: dict[str, Any] | None) -> str:
    if not section:
        return ""
    return f"{section['p50_ms']:.1f} / {section['p95_ms']:.1f} / {section['p99_ms']:.1f}"


def _verdict(key: str, value: float | None) -> tuple[str, str]:
    target, check = TARGETS[key]
    if value is None:
        return target, "[yellow]n/a[/]"
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
    row("POST /v1/orders, max throughput", "orders", "rps", "ok_rps")
    orders_half = m.get("orders_half")
    if orders_half:
        table.add_row(
            "POST /v1/orders at half throughput",
            f"{orders_half['ok_rps']:,.0f} rps (target {orders_half['target_rps']:,.0f})",
            _lat(orders_half),
            orders_half.get("tool", ""),
        )
    else:
        row("POST /v1/orders at half throughput", "orders_half", "rps", "ok_rps")
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
    }
    for key, label in labels.items():
        value = ratios.get(key)
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

    env = results.get("environment", {})
    if env:
        console.print(
            "[dim]" + "; ".join(f"{k}: {v}" for k, v in env.items()) + "[/]", highlight=False
        )
    for phase, message in results.get("errors", {}).items():
        console.print(f"[red]{phase} failed:[/] {message}", highlight=False)


def write_json(results: dict[str, Any], path: Path) -> None:
    """Write the full results as JSON."""
    path.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n", encoding="utf-8")
