"""The operational artifacts shipped in ops/ match the code they watch.

Alert rules and dashboard panels are only useful if every metric, label and
route they name is one orderly really exports: a typo there is an alert that
never fires. These tests read ops/prometheus/alerts.yml and
ops/grafana/orderly.json and check them against orderly's own Prometheus
registry and routes; every alert must carry its severity, summary,
description and a runbook that exists. When ``promtool`` is installed the
rules also go through ``promtool check rules`` and the unit tests in
ops/prometheus/alerts.test.yml. The Alertmanager example must route pages to
orderly's own receiver (and goes through ``amtool check-config`` when
installed), and the SLO targets must be the ones the application computes.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.utils import floatToGoString

from orderly.config import load_settings
from orderly.core.jobs import JobStatus
from orderly.core.telemetry import HTTP_LATENCY, REGISTRY
from orderly.incidents import slo as app_slo
from orderly.ledger.repository import CHECK_NAMES
from orderly.main import create_app
from orderly.notifications.mailer import SMTP_BREAKER
from orderly.payments.gateway import BREAKER as STRIPE_BREAKER
from orderly.worker import all_tasks

ROOT = Path(__file__).resolve().parent.parent
OPS = ROOT / "ops"
RULES = OPS / "prometheus" / "alerts.yml"
RULE_TESTS = OPS / "prometheus" / "alerts.test.yml"
DASHBOARD = OPS / "grafana" / "orderly.json"
RUNBOOKS = OPS / "runbooks"
ALERTMANAGER = OPS / "alertmanager" / "alertmanager.yml"

SEVERITIES = {"page", "ticket"}
RUNBOOK_SECTIONS = ("## What it means", "## Impact", "## Confirm", "## Mitigate", "## Escalate")
TARGET_LABELS = {"job", "instance"}  # added by Prometheus to every scraped series

# Label values orderly sets without a constant to import (core/db.py, core/jobs.py).
POOL_STATES = {"checked_out", "idle", "overflow"}
JOB_OUTCOMES = {"succeeded", "retried", "dead"}

# The SLOs: name -> (error budget, recording rule prefix, alert name prefix).
SLOS = {
    "availability": (0.001, "orderly:availability_errors", "OrderlyAvailabilityBudgetBurn"),
    "order-latency": (0.01, "orderly:order_latency_slow", "OrderlyOrderLatencyBudgetBurn"),
}
# Burn-rate tiers (Google SRE workbook): suffix -> (factor, long, short window, severity).
TIERS = {
    "Fast": (14.4, "1h", "5m", "page"),
    "Medium": (6, "6h", "30m", "page"),
    "Slow": (1, "3d", "6h", "ticket"),
}

# ---------------------------------------------------------------- what orderly exports


@dataclass(frozen=True)
class Exported:
    """One series name orderly exposes and the labels it carries."""

    labels: frozenset[str]
    buckets: frozenset[str] = frozenset()


@cache
def exported() -> dict[str, Exported]:
    """Every series name in orderly's registry once all tasks and the app are imported."""
    all_tasks()  # task modules register their metrics on import (ledger, …)
    families = {family.name: family.type for family in REGISTRY.collect()}
    # The registry keeps each collector's label names only on the collector itself.
    labels: dict[str, frozenset[str]] = {}
    for collector, names in REGISTRY._collector_to_names.items():
        for name in names:
            labels[name] = frozenset(getattr(collector, "_labelnames", ()))
    suffixes = {
        "counter": ("_total",),
        "gauge": ("",),
        "histogram": ("_bucket", "_sum", "_count"),
        "summary": ("", "_sum", "_count"),
        "info": ("_info",),
    }
    series: dict[str, Exported] = {}
    for family, kind in families.items():
        for suffix in suffixes[kind]:
            name = family + suffix
            extra = {"le"} if suffix == "_bucket" else set()
            series[name] = Exported(labels[name] | extra)
    series["up"] = Exported(frozenset())
    bounds = frozenset(floatToGoString(b) for b in HTTP_LATENCY._upper_bounds)
    name = "orderly_http_request_duration_seconds_bucket"
    series[name] = Exported(series[name].labels, bounds)
    return series


@cache
def route_templates() -> frozenset[str]:
    """The path templates the HTTP metrics label requests with (``route``)."""
    settings = load_settings(
        env="development",
        data_dir=Path(tempfile.gettempdir()) / "orderly-ops-test",
        database_url="postgresql://orderly@127.0.0.1:5432/orderly",
        jwt_secret=secrets.token_urlsafe(48),
        encryption_keys=secrets.token_urlsafe(32),
    )
    app = create_app(settings, database_url="postgresql://orderly@127.0.0.1:5432/orderly")
    # The full templates the metrics middleware labels with (routers are included lazily).
    templates: dict[int, str] = app.state.route_templates
    return frozenset(templates.values()) | {"unmatched"}


def allowed_values(metric: str, label: str) -> set[str] | None:
    """The values a label can take, when orderly's code fixes them (else None)."""
    known: dict[tuple[str, str], set[str]] = {
        ("orderly_queue_depth", "status"): {status.value for status in JobStatus},
        ("orderly_ledger_violations", "check"): set(CHECK_NAMES),
        ("orderly_db_pool_connections", "state"): POOL_STATES,
        ("orderly_job_outcomes_total", "outcome"): JOB_OUTCOMES,
        ("orderly_circuit_breaker_open", "breaker"): {STRIPE_BREAKER, SMTP_BREAKER},
        ("orderly_load_shed_total", "what"): {"orders"},
    }
    tasks = {t.name for t in all_tasks()}
    for histogram in ("_bucket", "_sum", "_count"):
        known[("orderly_job_duration_seconds" + histogram, "task")] = tasks
    known[("orderly_job_outcomes_total", "task")] = tasks
    return known.get((metric, label))


# ---------------------------------------------------------------- a small PromQL reader

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_PLACEHOLDER = re.compile(r"\x01(\d+)\x02")
_GRAFANA_VARIABLE = re.compile(r"\$\{?\w+\}?")
_SELECTOR = re.compile(r"(?<![\w:])([A-Za-z_:][\w:]*)?\s*\{([^}]*)\}")
_MATCHER = re.compile(r"([A-Za-z_]\w*)\s*(=~|!~|!=|=)\s*\x01(\d+)\x02")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENTIFIER = re.compile(r"(?<![\w:.])([A-Za-z_:][\w:]*)(?![\w:])(?!\s*\()")
_KEYWORDS = {
    "and",
    "or",
    "unless",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "offset",
    "inf",
    "nan",
}


@dataclass(frozen=True)
class Matcher:
    """``label op "value"`` inside a selector."""

    metric: str
    label: str
    op: str
    value: str


@dataclass(frozen=True)
class Parsed:
    """The series names and label matchers one PromQL expression uses."""

    names: frozenset[str]
    matchers: tuple[Matcher, ...]


def parse_promql(expr: str) -> Parsed:
    """Metric names and label matchers in *expr* (enough of PromQL for our rules)."""
    strings: list[str] = []

    def stash(match: re.Match[str]) -> str:
        strings.append(match.group(0)[1:-1])
        return f"\x01{len(strings) - 1}\x02"

    text = _STRING.sub(stash, expr)
    text = _GRAFANA_VARIABLE.sub("", text)
    matchers: list[Matcher] = []
    for selector in _SELECTOR.finditer(text):
        metric = selector.group(1) or ""
        body = selector.group(2)
        found = list(_MATCHER.finditer(body))
        leftover = _MATCHER.sub("", body).replace(",", "").strip()
        assert not leftover, f"unparsed matcher {leftover!r} in {expr!r}"
        for m in found:
            matchers.append(Matcher(metric, m.group(1), m.group(2), strings[int(m.group(3))]))
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = _GROUPING.sub(" ", text)
    text = re.sub(r"\boffset\s+-?\w+", " ", text)
    text = _PLACEHOLDER.sub(" ", text)
    names = {m.group(1) for m in _IDENTIFIER.finditer(text) if m.group(1).lower() not in _KEYWORDS}
    return Parsed(frozenset(names), tuple(matchers))


def test_promql_reader_finds_names_and_matchers() -> None:
    """The reader the other tests rely on sees through functions, groupings and strings."""
    parsed = parse_promql(
        "histogram_quantile(0.99, sum by (le, route) (rate(orderly_http_request_duration_seconds"
        '_bucket{route=~"$route",method="POST"}[$__rate_interval]))) > 1e3 '
        "and on (job) time() - max(orderly_ledger_last_reconciliation_timestamp_seconds offset 1h)"
        ' unless orderly:x:ratio_rate5m{route="/v1/products/{product_id}"} > bool 1'
    )
    assert parsed.names == {
        "orderly_http_request_duration_seconds_bucket",
        "orderly_ledger_last_reconciliation_timestamp_seconds",
        "orderly:x:ratio_rate5m",
    }
    assert Matcher("orderly:x:ratio_rate5m", "route", "=", "/v1/products/{product_id}") in (
        parsed.matchers
    )
    assert len(parsed.matchers) == 3


# ---------------------------------------------------------------- loading the artifacts


@cache
def rules() -> dict[str, Any]:
    """alerts.yml as data."""
    data = yaml.safe_load(RULES.read_text())
    assert isinstance(data, dict)
    return data


def all_rules() -> Iterator[dict[str, Any]]:
    """Every recording and alerting rule, in file order."""
    for group in rules()["groups"]:
        yield from group["rules"]


def alerts() -> dict[str, dict[str, Any]]:
    """Alerting rules by name."""
    return {rule["alert"]: rule for rule in all_rules() if "alert" in rule}


def recorded() -> set[str]:
    """Names the recording rules define."""
    return {rule["record"] for rule in all_rules() if "record" in rule}


@cache
def dashboard() -> dict[str, Any]:
    """The Grafana dashboard JSON model."""
    data = json.loads(DASHBOARD.read_text())
    assert isinstance(data, dict)
    return data


def panels() -> list[dict[str, Any]]:
    """Every panel, rows included, nested ones flattened."""
    found: list[dict[str, Any]] = []
    for panel in dashboard()["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


def dashboard_exprs() -> list[str]:
    """Every PromQL expression in the dashboard's panels and variables."""
    exprs = [t["expr"] for p in panels() for t in p.get("targets", []) if t.get("expr")]
    for variable in dashboard()["templating"]["list"]:
        query = variable.get("query")
        if isinstance(query, dict):
            query = query.get("query")
        if variable["type"] == "query":
            match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", query)
            assert match, f"variable {variable['name']}: expected label_values(metric, label)"
            exprs.append(f'{match.group(1)} and {match.group(1)}{{{match.group(2)}=~".+"}}')
    return exprs


# ---------------------------------------------------------------- shared checks


def check_expression(expr: str, where: str) -> list[str]:
    """Problems with the names, labels and values *expr* uses (empty when none)."""
    problems: list[str] = []
    series = exported()
    parsed = parse_promql(expr)
    for name in sorted(parsed.names):
        if ":" in name:
            if name not in recorded():
                problems.append(f"{where}: {name} is not a recording rule in alerts.yml")
        elif name not in series:
            problems.append(f"{where}: orderly exports no metric {name}")
    for m in parsed.matchers:
        if m.metric not in series:
            continue  # recording rules carry only the labels they aggregate by
        if m.label not in series[m.metric].labels | TARGET_LABELS:
            problems.append(f"{where}: {m.metric} has no label {m.label!r}")
            continue
        problems.extend(check_value(m, where))
    return problems


def check_value(m: Matcher, where: str) -> list[str]:
    """Problems with one matcher's value, for labels whose values the code fixes."""
    if "$" in m.value:
        return []  # a Grafana variable
    literal = m.op in ("=", "!=")
    choices = [m.value] if literal else m.value.split("|")
    simple = all(re.fullmatch(r"[\w:./{}]+", c) for c in choices)
    if m.label == "route":
        routes = route_templates()
        ok = m.value in routes if literal else any(re.fullmatch(m.value, r) for r in routes)
        return [] if ok else [f"{where}: no route matches {m.label}{m.op}{m.value!r}"]
    if m.label == "le":
        buckets = exported()[m.metric].buckets
        if buckets and m.value not in buckets:
            return [f"{where}: {m.value!r} is not a bucket of {m.metric} ({sorted(buckets)})"]
        return []
    allowed = allowed_values(m.metric, m.label)
    if allowed is None or not simple:
        return []
    if m.label == "breaker":  # plus one breaker per webhook receiver (notifications/webhooks.py)
        choices = [c for c in choices if not c.startswith("webhook:")]
    return [
        f"{where}: {m.metric}{{{m.label}}} never takes the value {c!r} (one of {sorted(allowed)})"
        for c in choices
        if c not in allowed
    ]


# ---------------------------------------------------------------- alert rules


def test_rules_file_is_well_formed() -> None:
    """Groups are named once; every rule is either a recording or an alerting rule."""
    groups = rules()["groups"]
    names = [g["name"] for g in groups]
    assert len(names) == len(set(names)), names
    for group in groups:
        assert group["rules"], f"group {group['name']} is empty"
        for rule in group["rules"]:
            assert ("record" in rule) != ("alert" in rule), rule
            assert isinstance(rule["expr"], str), rule
            assert rule["expr"].strip(), rule
    alert_names = [r["alert"] for r in all_rules() if "alert" in r]
    assert len(alert_names) == len(set(alert_names)), alert_names
    assert len(recorded()) == sum(1 for r in all_rules() if "record" in r)


def test_every_alert_has_severity_summary_description_and_runbook() -> None:
    """What an on-call engineer needs from a notification is always there."""
    for name, rule in alerts().items():
        assert re.fullmatch(r"Orderly[A-Z]\w+", name), name
        assert rule.get("labels", {}).get("severity") in SEVERITIES, name
        annotations = rule.get("annotations", {})
        for key in ("summary", "description"):
            assert str(annotations.get(key, "")).strip(), f"{name}: no {key}"
        assert annotations.get("runbook_url") == f"ops/runbooks/{name}.md", name
        runbook = ROOT / annotations["runbook_url"]
        assert runbook.is_file(), f"{name}: {runbook} is missing"
        text = runbook.read_text()
        assert text.startswith(f"# {name}\n"), f"{runbook.name} must start with '# {name}'"
        for section in RUNBOOK_SECTIONS:
            assert section in text, f"{runbook.name} lacks the section {section!r}"


def test_every_runbook_belongs_to_an_alert() -> None:
    """No runbook is left behind when an alert is renamed or removed."""
    runbooks = {p.stem for p in RUNBOOKS.glob("*.md")}
    assert runbooks == set(alerts()), runbooks ^ set(alerts())


def test_links_between_ops_documents_resolve() -> None:
    """Runbooks link each other, the rules and the template: no link leads nowhere."""
    broken: list[str] = []
    for doc in OPS.rglob("*.md"):
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", doc.read_text()):
            if "://" not in target and not (doc.parent / target).exists():
                broken.append(f"{doc.relative_to(ROOT)} -> {target}")
    assert not broken, "\n".join(broken)


def test_slos_alert_on_every_burn_rate_tier() -> None:
    """Each SLO has the three multi-window burn-rate alerts of the SRE workbook."""
    for slo, (budget, ratio, prefix) in SLOS.items():
        for window in {w for _, long, short, _ in TIERS.values() for w in (long, short)} | {"30d"}:
            assert f"{ratio}:ratio_rate{window}" in recorded(), f"{slo}: no {window} ratio"
        for tier, (factor, long, short, severity) in TIERS.items():
            rule = alerts().get(prefix + tier)
            assert rule is not None, f"{slo}: no {prefix + tier}"
            assert rule["labels"]["severity"] == severity, prefix + tier
            assert rule["labels"]["slo"] == slo, prefix + tier
            expr = " ".join(rule["expr"].split())
            for window in (long, short):
                threshold = f"{ratio}:ratio_rate{window} > ({factor:g} * {budget:g})"
                assert threshold in expr, f"{prefix + tier}: expected {threshold!r} in {expr!r}"
            assert " and " in expr, f"{prefix + tier}: both windows must hold"


def test_cause_alerts_cover_what_breaks_orderly() -> None:
    """Each failure the product promises to survive has an alert on the metric that shows it."""
    expected = {
        "orderly_queue_depth": "page",
        "orderly_load_shed_total": "page",
        "orderly_queue_oldest_job_age_seconds": "page",
        "orderly_circuit_breaker_open": "page",
        "orderly_ledger_violations": "page",
        "orderly_ledger_last_reconciliation_timestamp_seconds": "ticket",
        "orderly:db_pool_utilisation:ratio": "ticket",
        "up": "page",
    }
    for metric, severity in expected.items():
        using = {
            rule["labels"]["severity"]
            for rule in alerts().values()
            if metric in parse_promql(rule["expr"]).names
        }
        assert severity in using, f"no {severity} alert on {metric} (found {using})"
    ledger = alerts()["OrderlyLedgerViolation"]
    assert "for" not in ledger, "money: a ledger violation pages at once"


def test_rule_expressions_use_only_exported_metrics_labels_and_routes() -> None:
    """A misspelt metric, label, route or bucket would make a rule silently never fire."""
    problems: list[str] = []
    for rule in all_rules():
        where = rule.get("alert") or rule.get("record")
        problems.extend(check_expression(rule["expr"], f"alerts.yml {where}"))
    assert not problems, "\n".join(problems)


def test_checks_catch_a_misspelt_metric_label_and_value() -> None:
    """The checks above reject what they are meant to reject."""
    problems = check_expression(
        'rate(orderly_http_request_total{route="/v1/order"}[5m])'
        ' + orderly_queue_depth{state="dead"} + orderly_queue_depth{status="gone"}'
        ' + orderly_http_request_duration_seconds_bucket{le="0.35"} + orderly:nope',
        "example",
    )
    assert len(problems) == 5, problems  # metric, recording rule, label, value, bucket
    assert check_expression('orderly_http_requests_total{route="/v1/order"}', "x")
    assert not check_expression('orderly_http_requests_total{route="/v1/orders"}', "x")


# ---------------------------------------------------------------- unit tests of the rules


def test_rule_unit_tests_make_every_alert_fire() -> None:
    """alerts.test.yml has a firing case per alert, on series orderly really exports."""
    spec = yaml.safe_load(RULE_TESTS.read_text())
    assert spec["rule_files"] == [RULES.name]
    fired: set[str] = set()
    problems: list[str] = []
    for case in spec["tests"]:
        for series in case.get("input_series", []):
            problems.extend(check_expression(series["series"], f"alerts.test.yml {case['name']}"))
        for check in case.get("alert_rule_test", []):
            assert check["alertname"] in alerts(), check["alertname"]
            for expected in check.get("exp_alerts", []):
                fired.add(check["alertname"])
                severity = alerts()[check["alertname"]]["labels"]["severity"]
                assert expected["exp_labels"]["severity"] == severity, check["alertname"]
    assert not problems, "\n".join(problems)
    assert fired == set(alerts()), f"never shown to fire: {set(alerts()) - fired}"


def test_promtool_accepts_the_rules_and_their_unit_tests(tmp_path: Path) -> None:
    """promtool (when installed) validates the rules and runs alerts.test.yml.

    The unit tests list labels only, and promtool compares annotations too, so
    they run against a copy of the rules without annotations (which the tests
    above check). Without promtool, the rules must at least parse as YAML with
    a valid duration in every ``for``.
    """
    for rule in all_rules():
        if "for" in rule:
            assert re.fullmatch(r"(\d+[smhdwy])+", str(rule["for"])), rule
    promtool = shutil.which("promtool")
    if promtool is None:
        assert not os.environ.get("CI"), "promtool is missing: .ci/run installs Debian's prometheus"
        return
    checked = subprocess.run(
        [promtool, "check", "rules", str(RULES)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    bare = {"groups": []}
    for group in rules()["groups"]:
        stripped = [{k: v for k, v in r.items() if k != "annotations"} for r in group["rules"]]
        bare["groups"].append({**group, "rules": stripped})
    (tmp_path / RULES.name).write_text(yaml.safe_dump(bare, sort_keys=False))
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
    tested = subprocess.run(
        [promtool, "test", "rules", RULE_TESTS.name],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr


# ---------------------------------------------------------------- dashboard


def test_dashboard_is_a_grafana_model_on_a_prometheus_variable() -> None:
    """Importable anywhere: no datasource uid baked in, ids unique, panels on the grid."""
    board = dashboard()
    assert board["uid"]
    assert board["title"]
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    ids = [p["id"] for p in panels()]
    assert len(ids) == len(set(ids)), ids
    for panel in panels():
        grid = panel["gridPos"]
        assert grid["x"] >= 0, panel["title"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"], f"panel {panel['title']!r} has no query"
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]
            assert target["expr"].strip(), panel["title"]


def test_dashboard_shows_every_signal_on_call_needs() -> None:
    """Requests, errors, latency, saturation, queue, jobs, breakers, ledger, shedding, SLOs."""
    used = set().union(*(parse_promql(e).names for e in dashboard_exprs()))
    for name in (
        "orderly_http_requests_total",
        "orderly_http_request_duration_seconds_bucket",
        "orderly_http_requests_in_flight",
        "orderly_db_pool_connections",
        "orderly_queue_depth",
        "orderly_queue_oldest_job_age_seconds",
        "orderly_job_outcomes_total",
        "orderly_circuit_breaker_open",
        "orderly_ledger_violations",
        "orderly_load_shed_total",
        "orderly:availability_errors:ratio_rate1h",
        "orderly:order_latency_slow:ratio_rate1h",
    ):
        assert name in used, f"the dashboard does not show {name}"
    quantiles = {
        q for e in dashboard_exprs() for q in re.findall(r"histogram_quantile\(([\d.]+),", e)
    }
    assert {"0.5", "0.95", "0.99"} <= quantiles


def test_dashboard_expressions_use_only_exported_metrics_labels_and_routes() -> None:
    """Every panel query names metrics, labels and routes that exist."""
    problems: list[str] = []
    for expr in dashboard_exprs():
        problems.extend(check_expression(expr, "orderly.json"))
    assert not problems, "\n".join(problems)


# ---------------------------------------------------------------- SLOs agree with the application


def test_slo_targets_are_the_ones_the_application_computes() -> None:
    """PRODUCT.md's targets, once: alerts' budgets and thresholds equal incidents/slo.py's."""
    app_names = {"availability": "availability", "order-latency": "order_latency"}
    for slo, (budget, _, _) in SLOS.items():
        assert round(1 - app_slo.OBJECTIVES[app_names[slo]], 6) == budget, slo
    assert TIERS["Fast"][0] == app_slo.FAST_BURN
    bound = floatToGoString(app_slo.ORDER_LATENCY_SECONDS)
    assert bound in exported()["orderly_http_request_duration_seconds_bucket"].buckets
    latency = [r for r in all_rules() if r.get("record", "").startswith("orderly:order_latency")]
    assert latency
    for rule in latency:
        assert f'le="{bound}"' in rule["expr"], rule["record"]


# ---------------------------------------------------------------- Alertmanager


@cache
def alertmanager() -> dict[str, Any]:
    """The Alertmanager example as data."""
    data = yaml.safe_load(ALERTMANAGER.read_text())
    assert isinstance(data, dict)
    return data


def test_alertmanager_example_sends_pages_to_orderly_with_a_bearer_token_file() -> None:
    """Pages reach POST /v1/webhooks/alertmanager, resolved ones too; no secret inline."""
    receivers = {r["name"]: r for r in alertmanager()["receivers"]}
    orderly = [
        (name, hook)
        for name, receiver in receivers.items()
        for hook in receiver.get("webhook_configs", [])
        if hook["url"].endswith("/v1/webhooks/alertmanager")
    ]
    assert len(orderly) == 1, orderly
    name, hook = orderly[0]
    assert "/v1/webhooks/alertmanager" in route_templates()
    assert hook["send_resolved"] is True  # resolved alerts become timeline entries
    auth = hook["http_config"]["authorization"]
    assert auth["type"] == "Bearer"
    assert "credentials_file" in auth
    assert "credentials" not in auth, "keep the token in a file, not in the config"
    routes = alertmanager()["route"]["routes"]
    to_orderly = [r for r in routes if r["receiver"] == name]
    assert to_orderly, f"no route sends alerts to {name}"
    assert to_orderly[0]["matchers"] == ['severity="page"']
    assert to_orderly[0].get("continue") is True, "orderly must not swallow the page"
    assert routes.index(to_orderly[0]) == 0
    for route in [alertmanager()["route"], *routes]:
        assert route["receiver"] in receivers, route
    severities = {rule["labels"]["severity"] for rule in alerts().values()}
    assert severities == SEVERITIES


def test_alertmanager_inhibit_rules_name_real_alerts() -> None:
    """An inhibition on a renamed alert would silently stop working."""
    names: set[str] = set()
    for rule in alertmanager().get("inhibit_rules", []):
        for matcher in [*rule.get("source_matchers", []), *rule.get("target_matchers", [])]:
            label, _, value = matcher.partition("=")
            if label.rstrip("=~!") == "alertname":
                names.update(value.strip('~"').split("|"))
    assert names
    assert names <= set(alerts()), names - set(alerts())


def test_amtool_accepts_the_alertmanager_example() -> None:
    """amtool (when installed) validates the configuration."""
    amtool = shutil.which("amtool")
    if amtool is None:
        assert not os.environ.get("CI"), "amtool is missing: .ci/run installs it"
        return
    checked = subprocess.run(
        [amtool, "check-config", str(ALERTMANAGER)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
