"""``zoo report``: the family table, ratios and speed-ups, on/off-target labelling, Pareto flags, PNG and JSON."""

from __future__ import annotations

import json

import pytest
from rich.console import Console
from typer.testing import CliRunner

from zoo import plan, registry, report
from zoo.store import Store, write_json

HERE = "Test CPU (2 cores, x86_64)"


def _results(node, acc, p50, size, on_target=True, measured_on=HERE, passed=True):
    gate = ({"passed": True, "reason": "built from base: no parent variant to compare with"} if node.parent == "base"
            else {"metric": "accuracy", "of": node.parent, "value": acc, "reference": 0.9, "ratio": acc / 0.9,
                  "min_ratio": 0.9, "passed": passed})
    return {"model": node.model_id, "variant": node.variant_id, "kind": node.kind, "hash": node.hash,
            "eval_hash": "x", "metrics": {"accuracy": acc, "f1": acc - 0.01}, "samples": 60, "seed": 0,
            "kfold": None, "gate": gate,
            "perf": {"measured_on": measured_on, "on_target": on_target,
                     "note": "on target" if on_target else "not measured on target", "size_bytes": size + 1000,
                     "weights_bytes": size, "params": 1000,
                     "latency_ms": {"batch_1": {"p50": p50, "p95": p50 * 1.2},
                                    "batch_N": {"p50": p50 * 3, "p95": p50 * 4, "batch": 4}},
                     "throughput_per_s": 4000 / (p50 * 3), "peak_rss_mb": 300.0, "runtime": "torch"}}


@pytest.fixture
def project(tiny_zoo):
    """The tiny zoo with four variants 'built' (provenance only) and given known results; qlora left unbuilt."""
    loaded = registry.load(tiny_zoo)
    store = Store.for_registry(loaded.path)
    nodes = {n.variant_id: n for n in plan.make(loaded)}
    figures = {
        "fp32": dict(acc=0.9, p50=10.0, size=4_000_000),
        "int8": dict(acc=0.89, p50=4.0, size=1_000_000),
        "distilled": dict(acc=0.80, p50=5.0, size=2_000_000, passed=False),  # slower and worse than int8
        "w16a16": dict(acc=0.9, p50=80.0, size=2_000_000, on_target=False),
    }
    for vid, f in figures.items():
        node = nodes[vid]
        store.artifact(node.hash).mkdir(parents=True)
        (store.artifact(node.hash) / "provenance.json").write_text("{}")
        write_json(store.results(node.hash), _results(node, **f))
    return loaded, store, nodes


def test_family_table_ratios_speedups_and_pareto(project):
    loaded, store, nodes = project
    table = report.family_table(loaded, store, "tiny-sentiment", [n for n in plan.make(loaded)])
    rows = {r["variant"]: r for r in table["rows"]}
    assert table["reference"] == "fp32" and table["primary_metric"] == "accuracy"
    assert rows["int8"]["ratio_to_fp32"] == pytest.approx(0.89 / 0.9, abs=1e-4)
    assert rows["int8"]["speedup"] == pytest.approx(2.5)
    assert rows["int8"]["size_mb"] == 1.0 and rows["int8"]["artifact_mb"] == pytest.approx(1.001)
    assert rows["qlora-4bit"]["status"] == "not built" and "metrics" not in rows["qlora-4bit"]
    assert rows["w16a16"]["on_target"] is False
    assert rows["distilled"]["gate_passed"] is False
    pareto = {v for v, r in rows.items() if r.get("pareto")}
    assert pareto == {"int8", "fp32"}  # distilled is beaten by int8 on both axes, w16a16 by fp32


def test_speedup_only_between_variants_measured_on_the_same_machine(project):
    loaded, store, nodes = project
    node = nodes["int8"]
    write_json(store.results(node.hash), _results(node, 0.89, 4.0, 1_000_000, measured_on="another machine"))
    table = report.family_table(loaded, store, "tiny-sentiment", plan.make(loaded))
    int8 = next(r for r in table["rows"] if r["variant"] == "int8")
    assert int8["speedup"] is None and int8["ratio_to_fp32"] is not None
    assert sorted(table["measured_on"]) == sorted([HERE, "another machine"])


def test_report_writes_table_json_and_a_png_and_prints_the_table(project):
    loaded, store, _ = project
    console = Console(record=True, width=250)
    out = report.report(loaded, store, ["tiny-sentiment"], as_json=False, console=console)
    folder = store.reports("tiny-sentiment")
    assert (folder / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((folder / "table.json").read_text()) == json.loads(json.dumps(out["tiny-sentiment"]))
    text = console.export_text()
    assert "cuda (not measured on it)" in text and "FAILED" in text and "2.50×" in text
    assert "w16a16: not measured on target" in text  # the off-target note is printed under the table
    assert "not built" in text and "pareto.png" in text


def test_report_without_results_writes_no_plot(tiny_zoo):
    loaded = registry.load(tiny_zoo)
    store = Store.for_registry(loaded.path)
    store.reports("tiny-sentiment").mkdir(parents=True)
    (store.reports("tiny-sentiment") / "pareto.png").write_bytes(b"stale")
    out = report.report(loaded, store, ["tiny-sentiment"], as_json=False, console=Console(record=True))
    assert out["tiny-sentiment"]["pareto_png"] is None
    assert not (store.reports("tiny-sentiment") / "pareto.png").exists()
    assert {r["status"] for r in out["tiny-sentiment"]["rows"]} == {"not built"}


def test_cli_report_json(project):
    from zoo.cli import app

    loaded, _, _ = project
    res = CliRunner().invoke(app, ["report", "--registry", str(loaded.path), "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["tiny-sentiment"]["pareto_png"] == "pareto.png"
    assert {r["variant"] for r in data["tiny-sentiment"]["rows"]} == {"fp32", "w16a16", "int8", "qlora-4bit",
                                                                     "distilled"}
