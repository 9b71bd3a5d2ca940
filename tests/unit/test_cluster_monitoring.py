"""Checks cluster/monitoring/: the Grafana dashboard and the alert rules query only the metrics and
labels of jobs/workers/metrics.py, every metric has a panel, the PrometheusRule is the plain rules
file, and the PodMonitor scrapes the port the KubeRay pods serve Ray's metrics on."""

from __future__ import annotations

import functools
import json
import re

import yaml
from support.cluster_configs import CLUSTER_DIR, configmaps, documents_of, ray_cluster_specs

from jobs.runs.run_metrics import NIGHT_FIGURES
from jobs.workers.metrics import METRICS, Metric

MONITORING = CLUSTER_DIR / "monitoring"
DASHBOARD = MONITORING / "grafana-dashboard.json"
RULES = MONITORING / "alert-rules.yaml"
PROMETHEUS_RULE = MONITORING / "prometheusrule.yaml"
POD_MONITOR = MONITORING / "podmonitor.yaml"

# Pushed to the Pushgateway under their plain names (jobs/runs/run_metrics.py), not through Ray.
PUSHED = NIGHT_FIGURES
HISTOGRAM_SERIES = ("_bucket", "_sum", "_count")
REQUIRED_ALERTS = {"MediajobsNightlyNoCommit", "MediajobsNightlyErrorBudget", "MediajobsNightlyThroughputDrop",
                   "MediajobsScoringFailures"}
SEVERITIES = {"critical", "warning", "info"}
# What an on-call reader is pointed at; each required alert names at least one.
WHERE_TO_LOOK = ("summary.json", "errors table", "mediajobs report")
# KubeRay puts this label on every Ray pod it creates (head and workers); the manifests cannot show it.
KUBERAY_POD_LABELS = {"ray.io/is-ray-node": "yes"}
KUBERAY_METRICS_PORT = "8080"  # KubeRay's metrics-export-port when rayStartParams do not set one

IDENTIFIER = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
SELECTOR = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{([^}]*)\}")
GROUPING = re.compile(r"\bby\s*\(([^)]*)\)\s*\(")
DURATION = re.compile(r"\d+[smhdwy]")


# --- the names ----------------------------------------------------------------------------

@functools.cache
def known_names() -> dict[str, Metric]:
    """Every series name a query may use, to the Metric it comes from."""
    names = {}
    for metric in METRICS:
        names[metric.exposed] = metric
        if metric.kind == "histogram":
            names.update({metric.exposed + suffix: metric for suffix in HISTOGRAM_SERIES})
    names.update({metric.name: metric for metric in PUSHED})
    return names


def without_strings(expr: str) -> str:
    # Matcher values ("$spec", "failed") are not names.
    return re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)


def our_names(expr: str) -> list[str]:
    # "mediajob" rather than the exact prefixes, so that a misspelt prefix is caught too.
    return [token for token in IDENTIFIER.findall(without_strings(expr)) if "mediajob" in token]


def closing(text: str, start: int) -> int:
    """The index of the parenthesis that closes the one at `start`."""
    depth = 0
    for i in range(start, len(text)):
        depth += {"(": 1, ")": -1}.get(text[i], 0)
        if depth == 0:
            return i
    raise AssertionError(f"unbalanced parentheses in {text!r}")


def groupings(expr: str) -> list[tuple[set[str], list[str]]]:
    """(labels, names aggregated) of each `<op> by (labels) (argument)` in an expression."""
    expr = without_strings(expr)
    found = []
    for match in GROUPING.finditer(expr):
        labels = {label.strip() for label in match.group(1).split(",") if label.strip()}
        argument = expr[match.end() - 1:closing(expr, match.end() - 1) + 1]
        found.append((labels, our_names(argument)))
    return found


# --- the files ----------------------------------------------------------------------------

@functools.cache
def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def panels(items: list[dict]) -> list[dict]:
    """Every panel, including those inside (collapsed) rows."""
    return [p for item in items for p in [item, *panels(item.get("panels", []))]]


def dashboard_queries() -> list[tuple[str, str]]:
    return [(f"dashboard panel {panel['title']!r} target {target.get('refId')}", target["expr"])
            for panel in panels(dashboard()["panels"]) for target in panel.get("targets", [])]


@functools.cache
def rule_groups() -> list[dict]:
    return yaml.safe_load(RULES.read_text())["groups"]


def rules() -> dict[str, dict]:
    return {rule["alert"]: rule for group in rule_groups() for rule in group["rules"] if "alert" in rule}


def rule_queries() -> list[tuple[str, str]]:
    return [(f"alert-rules.yaml rule {rule.get('alert') or rule.get('record')}", str(rule["expr"]))
            for group in rule_groups() for rule in group["rules"]]


def all_queries() -> list[tuple[str, str]]:
    return dashboard_queries() + rule_queries()


# --- the queries --------------------------------------------------------------------------

def test_monitoring_files_parse_and_hold_queries():
    assert dashboard()["schemaVersion"] >= 39
    assert len(dashboard_queries()) >= 10, "the dashboard lost its panels' queries"
    assert rules(), "alert-rules.yaml holds no alert"
    for where, expr in all_queries():
        assert expr.strip(), f"{where}: empty expr"


def test_queries_use_only_known_metric_names():
    known = known_names()
    for where, expr in all_queries():
        names = our_names(expr)
        assert names, f"{where}: queries no mediajobs metric: {expr}"
        unknown = sorted(set(names) - set(known))
        assert not unknown, (f"{where}: {unknown} is not a metric of jobs/workers/metrics.py "
                             f"(Ray's exposed names, or a nightly gauge's pushed name): {expr}")


def test_template_variable_queries_use_known_metric_names():
    for variable in dashboard()["templating"]["list"]:
        query = variable.get("query")
        text = query.get("query", "") if isinstance(query, dict) else str(query or "")
        unknown = sorted(set(our_names(text)) - set(known_names()))
        assert not unknown, f"dashboard variable {variable['name']}: {unknown} is not a known metric"


def test_queries_are_balanced_and_use_only_defined_variables():
    variables = {v["name"] for v in dashboard()["templating"]["list"]}
    for where, expr in all_queries():
        bare = without_strings(expr)
        for opening, close in ("()", "[]", "{}"):
            assert bare.count(opening) == bare.count(close), f"{where}: unbalanced {opening}{close}: {expr}"
        used = set(re.findall(r"\$(\w+)", expr))
        if where.startswith("alert-rules"):
            assert not used, f"{where}: Grafana variables {sorted(used)} mean nothing to Prometheus: {expr}"
        else:
            undefined = {name for name in used if not name.startswith("__")} - variables
            assert not undefined, f"{where}: ${sorted(undefined)} is not a dashboard variable: {expr}"
        assert not re.search(r"\)\s*(by|without)\s*\(", bare), \
            f"{where}: write `sum by (...) (...)`, the form this test checks the labels of: {expr}"


def test_aggregations_keep_only_labels_the_metric_has():
    known = known_names()
    for where, expr in all_queries():
        for labels, names in groupings(expr):
            for name in names:
                extra = labels - set(known[name].labels) - {"le"}
                assert not extra, f"{where}: {name} has no label {sorted(extra)} (it has {known[name].labels}): {expr}"
                if name.endswith("_bucket"):
                    assert "le" in labels, f"{where}: summing {name} without `le` loses the buckets: {expr}"


def test_selectors_match_only_labels_the_metric_has():
    known = known_names()
    for where, expr in all_queries():
        for name, matchers in SELECTOR.findall(without_strings(expr)):
            if name not in known:
                continue
            labels = set(re.findall(r"([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)", matchers))
            extra = labels - set(known[name].labels) - {"le"}
            assert not extra, f"{where}: {name} has no label {sorted(extra)} to match on: {expr}"


def test_every_metric_has_a_dashboard_panel():
    known = known_names()
    shown = {known[name] for _, expr in dashboard_queries() for name in our_names(expr) if name in known}
    missing = [metric.name for metric in METRICS if metric not in shown]
    assert not missing, f"no panel of {DASHBOARD.name} shows {missing}: add one"


# --- the alerts ---------------------------------------------------------------------------

def test_required_alerts_have_for_severity_and_annotations():
    found = rules()
    missing = REQUIRED_ALERTS - set(found)
    assert not missing, f"alert-rules.yaml lacks {sorted(missing)}"
    for name, rule in found.items():
        assert DURATION.fullmatch(str(rule.get("for", ""))), f"{name}: no `for` duration (a blip would page)"
        assert rule.get("labels", {}).get("severity") in SEVERITIES, f"{name}: severity not one of {SEVERITIES}"
        annotations = rule.get("annotations", {})
        assert annotations.get("summary") and annotations.get("description"), f"{name}: needs summary and description"
        if name in REQUIRED_ALERTS:
            assert any(hint in annotations["description"] for hint in WHERE_TO_LOOK), \
                f"{name}: the description should say where to look: one of {WHERE_TO_LOOK}"


def test_nightly_alerts_read_the_pushgateway_and_scoring_reads_ray():
    queries = {name: set(our_names(str(rule["expr"]))) for name, rule in rules().items()}
    pushed = {metric.name for metric in PUSHED}
    for name in REQUIRED_ALERTS - {"MediajobsScoringFailures"}:
        assert queries[name] <= pushed, \
            f"{name}: reads {sorted(queries[name] - pushed)}, which go when the Ray cluster goes"
    assert all(n.startswith("ray_") for n in queries["MediajobsScoringFailures"]), queries["MediajobsScoringFailures"]
    assert "[7d]" in rules()["MediajobsNightlyThroughputDrop"]["expr"], "the drop is against a 7-day average"


def test_error_budget_threshold_is_the_nightly_specs_max_error_rate():
    expr = str(rules()["MediajobsNightlyErrorBudget"]["expr"])
    threshold = re.search(r">\s*([0-9.]+)\s*$", expr.strip())
    assert threshold, f"MediajobsNightlyErrorBudget: expected `... > <ratio>`, got {expr}"
    rates = {yaml.safe_load(text).get("max_error_rate") for data in configmaps().values()
             for key, text in data.items() if key.endswith(".yaml") and yaml.safe_load(text).get("incremental")}
    assert rates == {float(threshold.group(1))}, \
        f"MediajobsNightlyErrorBudget fires over {threshold.group(1)}, the nightly specs fail over {rates}"


def test_prometheusrule_holds_the_plain_rules_files_groups():
    rule = yaml.safe_load(PROMETHEUS_RULE.read_text())
    assert rule["apiVersion"] == "monitoring.coreos.com/v1" and rule["kind"] == "PrometheusRule"
    assert rule["spec"]["groups"] == rule_groups(), \
        f"{PROMETHEUS_RULE.name} drifted from {RULES.name}: edit both (one source, two loaders)"


# --- the scrape ---------------------------------------------------------------------------

def test_podmonitor_selects_kuberay_ray_pods_in_the_manifests_namespace():
    monitor = yaml.safe_load(POD_MONITOR.read_text())
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1" and monitor["kind"] == "PodMonitor"
    selector = monitor["spec"]["selector"]
    assert not selector.get("matchExpressions"), "matchExpressions: not checked here; use matchLabels"
    labels = selector["matchLabels"]
    assert labels and labels.items() <= KUBERAY_POD_LABELS.items(), \
        f"{POD_MONITOR.name}: selects {labels}, not the labels KubeRay puts on Ray pods ({KUBERAY_POD_LABELS})"
    namespaces = {doc.body["metadata"].get("namespace") for doc in documents_of("RayCluster") + documents_of("RayJob")}
    assert "namespaceSelector" not in monitor["spec"]
    assert namespaces == {monitor["metadata"].get("namespace")}, \
        f"{POD_MONITOR.name}: a PodMonitor sees only its own namespace; the Ray manifests use {namespaces}"


def test_podmonitor_port_is_where_every_ray_pod_serves_metrics():
    endpoints = yaml.safe_load(POD_MONITOR.read_text())["spec"]["podMetricsEndpoints"]
    assert endpoints, f"{POD_MONITOR.name}: no podMetricsEndpoints"
    for endpoint in endpoints:
        for doc, cluster in ray_cluster_specs():
            for group in [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]:
                where = f"{doc} {group.get('groupName', 'head')}"
                port = str(group["rayStartParams"].get("metrics-export-port", KUBERAY_METRICS_PORT))
                ports = {p.get("name"): str(p["containerPort"])
                         for c in group["template"]["spec"]["containers"] for p in c.get("ports", [])}
                assert endpoint["port"] in ports, \
                    f"{where}: no container port named {endpoint['port']!r} for {POD_MONITOR.name} to scrape"
                assert ports[endpoint["port"]] == port, \
                    f"{where}: port {endpoint['port']} is {ports[endpoint['port']]}, Ray serves metrics on {port}"
