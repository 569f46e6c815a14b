"""The alerting rules (deploy/prometheus/alerts.yml) through promtool, from Debian's prometheus package:
they load, each alert passes its unit tests in alerts.test.yml with a case where it fires and one where it
must not, and each names a runbook section of docs/operations.md that says what it means, what to check and
what to do."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[3]
PROMETHEUS = ROOT / "deploy" / "prometheus"
RUNBOOK = ROOT / "docs" / "operations.md"


def alerts() -> list[dict[str, Any]]:
    groups = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, cwd=PROMETHEUS)


def test_rules_load(promtool: str) -> None:
    result = run(promtool, "check", "rules", "alerts.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_passes_its_promtool_tests(promtool: str) -> None:
    result = run(promtool, "test", "rules", "alerts.test.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_case_where_it_fires_and_one_where_it_does_not() -> None:
    cases = [case for test in yaml.safe_load((PROMETHEUS / "alerts.test.yml").read_text())["tests"]
             for case in test.get("alert_rule_test", [])]
    names = [a["alert"] for a in alerts()]
    assert len(names) == len(set(names)) >= 12
    fires = {c["alertname"] for c in cases if c.get("exp_alerts")}
    quiet = {c["alertname"] for c in cases if not c.get("exp_alerts")}
    assert set(names) - fires == set(), "alerts never shown firing"
    assert set(names) - quiet == set(), "alerts never shown staying quiet"
    assert (fires | quiet) - set(names) == set(), "tests of alerts that do not exist"


def slug(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_alert_names_its_runbook_section() -> None:
    text = RUNBOOK.read_text()
    sections = {slug(m.group(1)): m.end() for m in re.finditer(r"^### (.+)$", text, re.M)}
    for rule in alerts():
        name, annotations = rule["alert"], rule["annotations"]
        assert annotations["runbook_url"] == f"docs/operations.md#{slug(name)}", name
        assert slug(name) in sections, f"docs/operations.md has no section for {name}"
        start = sections[slug(name)]
        body = text[start:text.find("\n### ", start) if "\n### " in text[start:] else len(text)]
        for part in ("**What it means.**", "**What to check.**", "**What to do.**"):
            assert part in body, f"{name}'s runbook section lacks {part}"
        assert annotations.get("summary") and rule["labels"]["severity"] in ("warning", "critical"), name


def test_prometheus_sh_config_loads_the_rules(promtool: str, tmp_path: Path) -> None:
    template = (PROMETHEUS / "prometheus.yml").read_text()
    config = template.replace("@TARGETS@", '["127.0.0.1:8787"]').replace("@INTERVAL@", "5s")
    (tmp_path / "prometheus.yml").write_text(config)
    shutil.copy(PROMETHEUS / "alerts.yml", tmp_path / "alerts.yml")
    result = run(promtool, "check", "config", str(tmp_path / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "13 rules found" in result.stdout
