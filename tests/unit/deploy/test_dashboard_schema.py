"""The provisioned Grafana dashboard, checked without Grafana: it validates against Grafana's own dashboard
schema (tests/vendor/grafana-dashboard.schema.json), every query has a legend and follows the `instance`
variable, panels that name two series query both, and it uses the provisioned data source.
tests/integration/test_dashboard.py runs every query through a real Prometheus."""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import yaml

ROOT = Path(__file__).resolve().parents[3]
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "ingestflow.json"
SCHEMA = ROOT / "tests" / "vendor" / "grafana-dashboard.schema.json"


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def graph_panels() -> list[dict[str, Any]]:
    return [p for p in dashboard()["panels"] if p["type"] != "row"]


def test_validates_against_grafanas_dashboard_schema() -> None:
    schema = json.loads(SCHEMA.read_text())
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message[:200]}"
              for e in jsonschema.Draft7Validator(schema).iter_errors(dashboard())]
    assert errors == []


def test_every_query_has_a_legend_and_follows_the_instance_variable() -> None:
    variables = {v["name"]: v for v in dashboard()["templating"]["list"]}
    instance = variables["instance"]
    assert instance["includeAll"] and instance["multi"] and instance["allValue"] == ".*"
    assert 'up{job="ingestflow"}' in instance["query"]["query"]
    for panel in graph_panels():
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target.get("legendFormat"), f"{panel['title']} {target['refId']}: no legend"
            assert 'instance=~"$instance"' in target["expr"], f"{panel['title']}: ignores the instance variable"
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]


def test_panels_that_name_several_series_query_each() -> None:
    for panel in graph_panels():
        exprs = [t["expr"] for t in panel["targets"]]
        if "p50 / p99" in panel["title"]:
            assert any(e.startswith("histogram_quantile(0.5,") for e in exprs), panel["title"]
            assert any(e.startswith("histogram_quantile(0.99,") for e in exprs), panel["title"]
        if " and " in panel["title"]:
            assert len(exprs) >= 2 and not any(" or " in e for e in exprs), panel["title"]


def test_panels_have_unique_ids_and_do_not_overlap() -> None:
    panels = dashboard()["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    cells: dict[tuple[int, int], str] = {}
    for p in panels:
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24, p["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{p['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = p["title"]


def test_uses_the_provisioned_data_source() -> None:
    provisioned = yaml.safe_load((ROOT / "deploy" / "grafana" / "provisioning" / "datasources" /
                                  "prometheus.yml").read_text())["datasources"]
    uids = {d["uid"] for d in provisioned if d["type"] == "prometheus"}
    used = {p["datasource"]["uid"] for p in graph_panels()} | \
        {t["datasource"]["uid"] for p in graph_panels() for t in p["targets"]}
    assert used <= uids
    assert re.fullmatch(r"[a-z0-9-]+", dashboard()["uid"])
