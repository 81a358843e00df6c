"""The post-mortem draft: ``ops/postmortem-template.md``'s sections, filled from the record."""

from __future__ import annotations

from datetime import UTC, datetime

from orderly.core.db import Tx
from orderly.incidents import repository
from orderly.incidents.schemas import IncidentRead


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min {secs} s" if hours else f"{minutes} min {secs} s"


def _or(value: str | None, placeholder: str) -> str:
    return value.strip() if value and value.strip() else placeholder


async def render(tx: Tx, incident: IncidentRead) -> str:
    """Markdown with Title, Summary, Impact (duration, orders, revenue), Timeline, Root cause,
    Resolution, Action items and Lessons learned."""
    end = incident.closed_at or incident.stabilized_at or datetime.now(UTC)
    impact_rows = await repository.order_impact(tx, incident.started_at, end)
    orders = sum(row.orders for row in impact_rows)
    money = ", ".join(f"{row.total_cents / 100:.2f} {row.currency}" for row in impact_rows) or "0"
    lines = [
        f"# Post-mortem: {incident.title} ({incident.started_at:%Y-%m-%d})",
        "",
        "| | |",
        "|---|---|",
        "| **Status** | draft |",
        f"| **Severity** | {incident.severity.value} |",
        f"| **Incident commander** | {incident.commander_id or 'unassigned'} |",
        f"| **Detected by** | {incident.source.value} |",
        f"| **Started / stabilized / closed (UTC)** | {incident.started_at:%Y-%m-%d %H:%M:%S} / "
        f"{incident.stabilized_at or '—'} / {incident.closed_at or '—'} |",
        f"| **Duration** | {_duration((end - incident.started_at).total_seconds())} |",
        "",
        "## Summary",
        "",
        _or(incident.summary, "_To be written: what happened, for how long, who was affected._"),
        "",
        "## Impact",
        "",
        f"- Duration: {_duration((end - incident.started_at).total_seconds())}"
        f" ({incident.started_at:%H:%M:%S} – {end:%H:%M:%S} UTC).",
        f"- Orders placed in the window: {orders}; their value: {money}.",
        f"- {_or(incident.impact, 'Customer impact: to be assessed.')}",
        "",
        "## Timeline",
        "",
        "| time (UTC) | event | by |",
        "|---|---|---|",
        *(
            f"| {e.at:%Y-%m-%d %H:%M:%S} | {e.message.replace('|', '/')} | {e.actor} |"
            for e in incident.timeline
        ),
        "",
        "## Root cause",
        "",
        _or(incident.root_cause, "_To be determined (five whys)._"),
        "",
        "## Resolution",
        "",
        _or(incident.resolution, "_To be written: what ended the impact._"),
        "",
        "## Action items",
        "",
        "| action | owner | due |",
        "|---|---|---|",
        *(f"| {item} | | |" for item in incident.action_items),
        *(["| _none recorded yet_ | | |"] if not incident.action_items else []),
        "",
        "## Lessons learned",
        "",
        _or(incident.lessons_learned, "_To be written after the review._"),
        "",
    ]
    return "\n".join(lines)
