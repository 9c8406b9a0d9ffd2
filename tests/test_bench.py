"""``zoo bench``: a variant folder timed here with the zoo's protocol, beside the figures published with it."""

from __future__ import annotations

import json
import shutil

from rich.console import Console
from typer.testing import CliRunner

from zoo import bench, perf, plan, registry
from zoo.cli import app
from zoo.store import Store


def test_bench_a_pulled_folder_prints_the_card_figures_beside_this_machine(built_tiny_zoo, tmp_path):
    loaded = registry.load(built_tiny_zoo)
    store = Store.for_registry(loaded.path)
    node = next(n for n in plan.make(loaded) if n.key == "tiny-sentiment:int8")
    folder = tmp_path / "tiny-sentiment-int8"
    shutil.copytree(store.artifact(node.hash), folder)
    card = perf.measure_family([perf.Item(node.key, folder)], 2, 16, 3, rounds=1, retries=0, budget_s=2)[node.key]
    card["measured_on"] = "the publisher's machine"
    (folder / "results.json").write_text(json.dumps({"task": "text-classification", "perf": card}))

    got = bench.bench(str(folder), rounds=2, log=lambda *_: None)
    assert got["batch"] == 2 and got["seq_len"] == 16  # the card's shape, not a default
    assert got["here"]["protocol"]["rounds"] == 2 and got["card"]["measured_on"] == "the publisher's machine"
    b1 = got["ratios"]["batch_1"]
    assert b1 == round(card["latency_ms"]["batch_1"]["p50"] / got["here"]["latency_ms"]["batch_1"]["p50"], 3)
    console = Console(width=200, record=True)
    console.print(bench.render(got))
    text = console.export_text()
    assert "the publisher's machine" in text and f"{b1:.2f}×" in text


def test_bench_of_a_folder_that_is_no_variant_is_one_line(tmp_path):
    result = CliRunner().invoke(app, ["bench", str(tmp_path)])
    assert result.exit_code == 1 and "not a variant folder" in result.output
    assert len(result.output.strip().splitlines()) == 1
