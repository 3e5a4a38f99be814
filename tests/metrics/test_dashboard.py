"""The Grafana dashboard (docs/grafana/wvd-dashboard.json): Grafana's own dashboard model reads every field of
it, and it queries exactly the series the processes expose (core/metrics.py), each of them.

Grafana's model is grafana-foundation-sdk (Grafana Labs' SDK, generated from Grafana's dashboard and panel
schemas): with its panel and data-source plugins registered, panel options, field configs and Prometheus
queries decode into their typed classes, and anything they do not know is dropped on the way back to
JSON; so a round trip that loses nothing means every key is one Grafana's schema has.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from grafana_foundation_sdk.cog import plugins
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import prometheus, stat, timeseries
from grafana_foundation_sdk.models.dashboard import Dashboard, Panel, RowPanel
from prometheus_client import REGISTRY

from core import metrics  # noqa: F401 - registers the series
from testbed.processes import REPO_ROOT

DASHBOARD = REPO_ROOT / "docs" / "grafana" / "wvd-dashboard.json"
PANEL_OPTIONS = {"timeseries": timeseries.Options, "stat": stat.Options}


@pytest.fixture(scope="module")
def dashboard() -> dict:
    return json.loads(Path(DASHBOARD).read_text())


def lost_in(original, round_tripped, path: str = "") -> list[str]:
    """Paths of ``original`` that ``round_tripped`` lacks or holds with another value."""
    if isinstance(original, dict):
        if not isinstance(round_tripped, dict):
            return [path]
        return [lost for key, value in original.items()
                for lost in ([f"{path}/{key}"] if key not in round_tripped
                             else lost_in(value, round_tripped[key], f"{path}/{key}"))]
    if isinstance(original, list):
        if not isinstance(round_tripped, list) or len(original) != len(round_tripped):
            return [path]
        return [lost for index, (a, b) in enumerate(zip(original, round_tripped))
                for lost in lost_in(a, b, f"{path}/{index}")]
    return [] if original == round_tripped else [f"{path}: {original!r} became {round_tripped!r}"]


def test_grafanas_dashboard_model_reads_every_field(dashboard):
    plugins.register_default_plugins()
    model = Dashboard.from_json(dashboard)
    for panel in model.panels:
        assert isinstance(panel, (Panel, RowPanel))
        if isinstance(panel, Panel):
            assert isinstance(panel.options, PANEL_OPTIONS[panel.type_val]), panel.title
            assert all(isinstance(target, prometheus.Dataquery) for target in panel.targets), panel.title
    assert lost_in(dashboard, json.loads(json.dumps(model, cls=JSONEncoder))) == []


def test_a_field_grafana_does_not_know_would_be_caught(dashboard):
    plugins.register_default_plugins()
    misspelt = json.loads(json.dumps(dashboard))
    panel = next(panel for panel in misspelt["panels"] if panel["type"] == "timeseries")
    panel["gridpos"] = panel.pop("gridPos")
    panel["targets"][0]["legend"] = panel["targets"][0].pop("legendFormat")
    lost = lost_in(misspelt, json.loads(json.dumps(Dashboard.from_json(misspelt), cls=JSONEncoder)))
    index = misspelt["panels"].index(panel)
    assert sorted(lost) == [f"/panels/{index}/gridpos", f"/panels/{index}/targets/0/legend"]


def exposed_sample_names() -> dict[str, str]:
    """Each wvd_ sample name the processes can expose, with the family it belongs to."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}
    return {family.name + suffix: family.name for family in REGISTRY.collect() if family.name.startswith("wvd_")
            for suffix in suffixes[family.type]}


def test_it_queries_each_series_the_processes_expose_and_no_other(dashboard):
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    queried = {name for expr in exprs for name in re.findall(r"\bwvd_[a-z_]+", expr)}
    exposed = exposed_sample_names()
    assert queried - set(exposed) == set()
    assert {exposed[name] for name in queried} == set(exposed.values())


def test_its_panels_have_their_own_ids_and_places(dashboard):
    panels = dashboard["panels"]
    assert len({panel["id"] for panel in panels}) == len(panels)
    cells = [(panel["gridPos"]["x"] + dx, panel["gridPos"]["y"] + dy) for panel in panels
             for dx in range(panel["gridPos"]["w"]) for dy in range(panel["gridPos"]["h"])]
    assert len(cells) == len(set(cells))
    assert all(panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24 for panel in panels)
