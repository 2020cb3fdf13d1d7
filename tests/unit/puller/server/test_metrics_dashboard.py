"""The Grafana dashboard in docs/ asks only for metrics that ``/metrics`` exposes."""

import json
import re
from pathlib import Path

from puller.server.metrics import Metrics

DASHBOARD = Path(__file__).resolve().parents[4] / "docs" / "grafana-rollout.json"
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
METRIC_NAME = re.compile(r"\b(puller_[a-z0-9_]+)\b")


def exposed():
    """Every sample name a server's registry can show, from its metric families (labelled ones included)."""
    metrics = Metrics(lambda: [], job_counts=lambda: {})
    return set(family.name + suffix for family in metrics.registry.collect() for suffix in SUFFIXES[family.type])


def test_every_panel_asks_for_metrics_the_server_exposes():
    dashboard = json.loads(DASHBOARD.read_text())
    names = exposed()
    assert {"puller_job_bytes_done", "puller_job_images_progress", "puller_pulled_bytes_total"} <= names
    panels = dashboard["panels"]
    assert panels and dashboard["schemaVersion"] >= 36
    for panel in panels:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            asked = set(METRIC_NAME.findall(target["expr"]))
            assert asked and asked <= names, (panel["title"], target["expr"], asked - names)
    (variable,) = [v for v in dashboard["templating"]["list"] if v["name"] == "datasource"]
    assert variable["type"] == "datasource" and variable["query"] == "prometheus"
    assert len(set(p["id"] for p in panels)) == len(panels)
