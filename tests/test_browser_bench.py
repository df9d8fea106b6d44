"""Smoke test of `python -m benchmarks.browser` (a measurement, not a test: targets met or missed don't fail
here).

One --quick run on the shipped model: the real app (`python app.py`) in a subprocess, driven by headless Debian
Chromium through Playwright. Then: the report has a row for the upload, every tab 1..5, every control of the view
registry (views.CONTROLS) and every patch click, each measured without an error, with painted > 0, bytes > 0,
server > 0 and painted >= server (the page cannot show a result before the handler has made it); each row timed the
event it meant to (its api_name); and the parts of each painted time add up to it.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from explorer.app import views
from explorer.app.text import STEPS

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    pytest.importorskip("playwright.sync_api", reason="pip install playwright (never `playwright install`)")
    from benchmarks import browser
    from benchmarks.models import DEFAULT_CHECKPOINT

    if not Path(browser.CHROMIUM).is_file():
        pytest.skip(f"no browser at {browser.CHROMIUM}: apt-get install chromium")
    if not Path(str(DEFAULT_CHECKPOINT) + ".json").is_file():
        pytest.skip(f"no shipped checkpoint at {DEFAULT_CHECKPOINT}")
    out = tmp_path_factory.mktemp("browser_bench") / "browser_bench.json"
    code = browser.main(["--quick", "--model", browser.SHIPPED, "--json", str(out)])
    assert code == 0
    return json.loads(out.read_text())


def expected_rows() -> dict[str, str]:
    """Row id -> the event (api_name) it must have timed."""
    rows = {"upload": "analyse"}
    rows |= {f"tab.{n}": f"step_{n}" for n in range(1, len(STEPS))}
    # every control a person can change on the shipped model (a paper's ViT: its query radio offers CLS alone)
    rows |= {f"control.{name}": f"set_{name}" for name in views.CONTROLS if name != "query_label"}
    for n in range(1, len(STEPS)):
        if views.affected(n, "selected"):
            rows[f"control.select_patch.step{n}"] = None  # a private event: no api_name
            rows[f"control.class_token.step{n}"] = "class_token"
    rows |= {f"control.click.{name}": None for name, spec in views.VIEWS.items() if spec.click}
    return rows


def test_every_step_and_control_is_measured(report):
    rows = {row["id"]: row for row in report["rows"]}
    missing = sorted(set(expected_rows()) - set(rows))
    assert not missing, missing
    for row_id in expected_rows():
        row = rows[row_id]
        assert not row["error"], (row_id, row["error"])
        assert row["n"] >= 1, row_id
        assert row["painted_ms"] > 0 and row["server_ms"] > 0 and row["bytes"] > 0, (row_id, row)
        assert row["painted_ms"] >= row["server_ms"], (row_id, row["painted_ms"], row["server_ms"])
        for painted, server in zip(row["painted"], row["server"]):
            assert painted >= server > 0, (row_id, painted, server)


def test_each_row_timed_its_own_event(report):
    rows = {row["id"]: row for row in report["rows"]}
    for row_id, api_name in expected_rows().items():
        for sample in rows[row_id]["samples"]:
            events = [event["event"] for event in sample["events"]]
            assert events, row_id
            if api_name is not None:
                assert api_name in events, (row_id, events)
            assert all(event["success"] for event in sample["events"]), (row_id, sample["events"])


def test_painted_is_the_sum_of_its_parts(report):
    """painted = input -> event sent + round trip (server + the rest) + render after the last message."""
    for row in report["rows"]:
        for sample in row["samples"]:
            if sample["error"]:
                continue
            parts = sample["to_join_ms"] + sample["server_ms"] + sample["post_wire_ms"] + sample["render_ms"]
            assert abs(parts - sample["painted_ms"]) < 1.0, (row["id"], parts, sample["painted_ms"])
            assert sample["render_ms"] >= 0 and sample["to_join_ms"] >= 0, (row["id"], sample)


def test_the_views_payloads_are_named(report):
    """Every output of a tab's event is named after its view, so a heavy payload points at the view to lighten."""
    rows = {row["id"]: row for row in report["rows"]}
    for n in range(1, len(STEPS)):
        outputs = {o["output"] for event in rows[f"tab.{n}"]["samples"][0]["events"] for o in event["outputs"]}
        assert set(views.step_views(n)) <= outputs, (n, sorted(outputs))
