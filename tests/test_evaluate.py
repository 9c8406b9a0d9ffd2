"""Evaluation: metrics, k-fold, the gate (and that it blocks a broken variant), incremental reuse, perf, machine."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from tiny import rerecord_provenance
from typer.testing import CliRunner

from zoo import evaluate, machine, metrics, perf, plan, registry
from zoo.errors import ZooError
from zoo.registry.schema import Target
from zoo.store import Store


def _load(reg: Path):
    loaded = registry.load(reg)
    return loaded, Store.for_registry(loaded.path), {n.key: n for n in plan.make(loaded)}


@pytest.fixture(scope="module")
def evaluated(built_tiny_zoo, tmp_path_factory):
    """A private copy of the built tiny zoo (with 3-fold spread) with fp32 and int8 evaluated, perf in child processes.

    evaluation.* is not part of the build hash, so adding kfold keeps the built artifacts.
    """
    dest = tmp_path_factory.mktemp("evaluated") / "project"
    shutil.copytree(built_tiny_zoo.parent, dest)
    reg = dest / "registry.yaml"
    reg.write_text(reg.read_text().replace("repeats: 3", "repeats: 3\n      kfold: 3"))
    loaded, store, nodes = _load(dest / "registry.yaml")
    lines: list[str] = []
    out = evaluate.evaluate(loaded, store, [nodes["tiny-sentiment:int8"]], log=lines.append)
    return dest / "registry.yaml", out, lines


def _in_process(monkeypatch, calls: list | None = None):
    """Run perf in this process (fast); the real child-process path is covered by ``evaluated``."""

    def fake(artifact_dir, batch, seq_len, repeats, device="cpu", **_):
        if calls is not None:
            calls.append(artifact_dir)
        return perf.run(Path(artifact_dir), batch, seq_len, 3, device, budget_s=5)

    monkeypatch.setattr(perf, "measure", fake)


# --- metrics -------------------------------------------------------------------------------------------------------

def test_accuracy_and_macro_f1_match_hand_computed_values():
    y = [0, 0, 0, 1, 1, 2]
    p = [0, 0, 1, 1, 2, 2]
    assert metrics.accuracy(y, p) == pytest.approx(4 / 6)
    # per class F1: c0 = 2*2/(4+0+1) = .8, c1 = 2*1/(2+1+1) = .5, c2 = 2*1/(2+1+0) = 2/3
    assert metrics.macro_f1(y, p) == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    assert metrics.macro_f1([0, 0], [0, 0], n_classes=2) == 1.0  # an absent class is left out, not scored 0


def test_kfold_partitions_the_rows_and_reports_spread():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 100)
    p = np.where(rng.random(100) < 0.8, y, 1 - y)
    out = metrics.kfold(["accuracy", "f1"], y, p, k=5, seed=0)
    assert out["accuracy"]["k"] == 5
    # equal folds: the mean of the fold accuracies is the overall accuracy
    assert out["accuracy"]["mean"] == pytest.approx(metrics.accuracy(y, p))
    assert out["accuracy"]["std"] > 0
    assert metrics.kfold(["accuracy"], y, p, k=5, seed=0) != metrics.kfold(["accuracy"], y, p, k=5, seed=1)
    with pytest.raises(ZooError, match="kfold"):
        metrics.kfold(["accuracy"], [0, 1], [0, 1], k=5)


def test_ratio_is_inverted_for_perplexity():
    assert metrics.ratio("accuracy", 0.9, 1.0) == pytest.approx(0.9)
    assert metrics.ratio("perplexity", 12.0, 10.0) == pytest.approx(10 / 12)  # worse perplexity: ratio below 1
    assert metrics.ratio("accuracy", 0.0, 0.0) == 1.0


# --- machine -------------------------------------------------------------------------------------------------------

def _fp(**kw):
    base = {"name": "test box", "arch": "x86_64", "isa": ["avx2", "avx512f"], "gpu": None, "board": None}
    return {**base, **kw}


def test_machine_matches_targets_by_device_arch_isa_and_board():
    assert machine.matches(Target(device="cpu", arch="x86_64", isa="avx512"), _fp()) == (True, "")
    ok, why = machine.matches(Target(device="cpu", arch="x86_64", isa="avx512-vnni"), _fp())
    assert not ok and "avx512_vnni" in why
    ok, why = machine.matches(Target(device="gpu", runtime="torch"), _fp())
    assert not ok and "GPU" in why
    assert machine.matches(Target(device="gpu"), _fp(gpu={"name": "H100"}))[0]
    ok, why = machine.matches(Target(device="cpu", arch="aarch64", isa="arm64"), _fp())
    assert not ok and "aarch64" in why
    pi = _fp(arch="aarch64", isa=["asimd"], board="Raspberry Pi 5 Model B Rev 1.0")
    assert machine.matches(Target(device="cpu", arch="aarch64", isa="neon", board="Raspberry Pi 5"), pi)[0]
    ok, why = machine.matches(Target(device="cpu", arch="aarch64", board="Raspberry Pi 5"), _fp(arch="aarch64"))
    assert not ok and "Raspberry Pi 5" in why


def test_fingerprint_describes_this_machine():
    fp = machine.fingerprint()
    assert fp["cores"] >= 1 and fp["python"] and fp["libraries"]["torch"] != "absent"
    assert fp["cpu"] in fp["name"] and fp["arch"] in fp["name"]
    json.dumps(fp)


# --- evaluation on the built tiny zoo ------------------------------------------------------------------------------

def test_results_follow_the_contract(evaluated):
    reg, out, _ = evaluated
    loaded, store, nodes = _load(reg)
    assert list(out) == ["tiny-sentiment:fp32", "tiny-sentiment:int8"]  # the parent first
    fp32, int8 = out["tiny-sentiment:fp32"], out["tiny-sentiment:int8"]
    for key, r in out.items():
        assert json.loads(store.results(nodes[key].hash).read_text()) == json.loads(json.dumps(r))
        assert set(r["metrics"]) == {"accuracy", "f1"} and all(0 <= v <= 1 for v in r["metrics"].values())
        assert r["samples"] == 60 and r["seed"] == 0 and r["hash"] == nodes[key].hash
        assert r["kfold"]["accuracy"]["k"] == 3
        assert r["kfold"]["accuracy"]["mean"] == pytest.approx(r["metrics"]["accuracy"])  # 3 folds of 20 rows
        p = r["perf"]
        assert p["latency_ms"]["batch_1"]["p50"] > 0 and p["latency_ms"]["batch_N"]["batch"] == 4
        assert p["latency_ms"]["batch_N"]["p95"] >= p["latency_ms"]["batch_N"]["p50"]
        assert p["throughput_per_s"] > 0 and p["peak_rss_mb"] > p["baseline_rss_mb"] > 0
        artifact = store.artifact(r["hash"])
        files = [f for f in artifact.rglob("*") if f.is_file() and f.name != "provenance.json"]
        assert p["size_bytes"] == sum(f.stat().st_size for f in files)
        assert p["params"] > 1000
        on, _ = machine.matches(loaded.registry.targets["x86-avx512"])
        assert p["on_target"] is on and (p["note"].startswith("measured on target") is on)
    assert fp32["perf"]["runtime"] == "torch" and int8["perf"]["runtime"] == "onnxruntime"
    assert fp32["gate"] == {"passed": True, "reason": "built from base: no parent variant to compare with"}
    g = int8["gate"]
    assert g["of"] == "fp32" and g["metric"] == "accuracy" and g["min_ratio"] == 0.9
    assert g["reference"] == fp32["metrics"]["accuracy"] and g["value"] == int8["metrics"]["accuracy"]
    assert g["ratio"] == pytest.approx(g["value"] / g["reference"], abs=1e-6)
    assert g["passed"] == (g["ratio"] >= 0.9)
    assert fp32["metrics"]["accuracy"] > 0.6, "the tiny fp32 must learn the task for the gate tests to mean much"


def test_unbuilt_variants_are_skipped_with_a_line(evaluated, tmp_path):
    reg, _, lines = evaluated
    loaded, store, nodes = _load(reg)
    ghost = plan.Node("tiny-sentiment", "ghost", "int8", "fp32", "int8", "onnx-int8", "x86-avx512",
                      "0" * 16, {})
    said: list[str] = []
    assert evaluate.evaluate(loaded, store, [ghost], log=said.append) == {}
    assert said == ["tiny-sentiment:ghost: not built, skipped (run `zoo build tiny-sentiment:ghost`)"]


def test_same_inputs_reuse_results_and_force_recomputes(evaluated, monkeypatch):
    reg, first, _ = evaluated
    loaded, store, nodes = _load(reg)
    calls: list = []
    _in_process(monkeypatch, calls)
    again = evaluate.evaluate(loaded, store, [nodes["tiny-sentiment:int8"]], log=lambda *_: None)
    assert calls == [] and again == first
    forced = evaluate.evaluate(loaded, store, [nodes["tiny-sentiment:int8"]], force=True, log=lambda *_: None)
    # the family (int8 and its reference fp32) is timed together: ROUNDS rounds each, once more if noisy
    assert len(calls) in (2 * perf.ROUNDS, 4 * perf.ROUNDS)
    assert {Path(c).name for c in calls} == {nodes[k].hash for k in ("tiny-sentiment:int8", "tiny-sentiment:fp32")}
    assert forced["tiny-sentiment:int8"]["metrics"] == first["tiny-sentiment:int8"]["metrics"]  # deterministic
    assert forced["tiny-sentiment:int8"]["eval_hash"] == first["tiny-sentiment:int8"]["eval_hash"]


def test_eval_hash_moves_with_the_spec_and_the_reference(evaluated):
    reg, out, _ = evaluated
    loaded, _, nodes = _load(reg)
    node = nodes["tiny-sentiment:int8"]
    fp32 = out["tiny-sentiment:fp32"]
    h = evaluate.eval_hash(loaded, node, "fp32", fp32)
    assert h == out["tiny-sentiment:int8"]["eval_hash"]
    assert evaluate.eval_hash(loaded, node, "fp32", {"metrics": {"accuracy": 0.1}}) != h
    changed = registry.load(reg, text=reg.read_text().replace("kfold: 3", "kfold: 4"))
    assert evaluate.eval_hash(changed, node, "fp32", fp32) != h


def test_samples_cap_picks_a_seeded_subset(tiny_zoo):
    text = tiny_zoo.read_text().replace("repeats: 3", "repeats: 3\n      samples: 10")
    loaded = registry.load(tiny_zoo, text=text)
    model = loaded.model("tiny-sentiment")
    rows = evaluate.eval_rows(model, loaded, "tiny-sentiment")
    full = evaluate.eval_rows(loaded.model("tiny-sentiment").model_copy(update={
        "evaluation": model.evaluation.model_copy(update={"samples": None})}), loaded, "tiny-sentiment")
    assert len(rows) == 10 and len(full) == 60
    assert set(rows.indices) < set(full.indices)
    assert evaluate.eval_rows(model, loaded, "tiny-sentiment").indices == rows.indices


def _negate_classifier(artifact: Path) -> None:
    """Flip every prediction of a transformers artifact by negating its classification head."""
    from safetensors.torch import load_file, save_file

    path = artifact / "model.safetensors"
    tensors = load_file(path)
    head = [k for k in tensors if k.startswith("classifier.")]
    assert head, f"no classifier.* tensor in {path}"
    for k in head:
        tensors[k] = -tensors[k]
    save_file(tensors, path, metadata={"format": "pt"})
    rerecord_provenance(artifact)


def test_the_gate_blocks_a_broken_variant(evaluated, monkeypatch):
    reg, first, _ = evaluated
    loaded, store, nodes = _load(reg)
    node = nodes["tiny-sentiment:w16a16"]
    _negate_classifier(store.artifact(node.hash))
    _in_process(monkeypatch)
    out = evaluate.evaluate(loaded, store, [node], force=True, log=lambda *_: None)
    gate = out["tiny-sentiment:w16a16"]["gate"]
    assert gate["passed"] is False and gate["ratio"] < gate["min_ratio"]
    assert gate["verdict"] == "worse" and gate["interval"]["high"] < gate["min_ratio"]
    assert gate["value"] == pytest.approx(1 - gate["reference"], abs=0.02)  # every binary prediction flipped
    rows = json.loads(CliRunner().invoke(_app(), ["list", "--registry", str(reg), "--json"]).stdout)
    status = {r["variant"]: r["status"] for r in rows}
    assert status["w16a16"] == "evaluated, GATE FAILED"
    int8_passed = first["tiny-sentiment:int8"]["gate"]["passed"]
    assert status["int8"] == f"evaluated, {'gate pass' if int8_passed else 'GATE FAILED'}"
    text = CliRunner().invoke(_app(), ["list", "--registry", str(reg)], env={"COLUMNS": "200"}).stdout
    assert "GATE FAILED" in text


def test_results_carry_intervals_a_paired_gate_and_interleaved_timing(evaluated):
    _, out, _ = evaluated
    r = out["tiny-sentiment:int8"]
    iv = r["intervals"]["accuracy"]
    assert iv["low"] <= r["metrics"]["accuracy"] <= iv["high"] and iv["rows"] == r["samples"]
    assert iv["resamples"] >= 1000 and iv["level"] == 0.95
    g = r["gate"]
    assert g["interval"]["low"] <= g["ratio"] <= g["interval"]["high"] and g["rows"] == r["samples"]
    assert g["passed"] == (g["verdict"] == "pass") == (g["interval"]["low"] >= g["min_ratio"])
    assert 0 <= g["agreement"] <= 1 and len(r["predictions"]["preds"]) == r["samples"]
    assert r["perf"]["protocol"]["rounds"] == perf.ROUNDS and isinstance(r["perf"]["noisy"], bool)
    assert r["perf"]["session"] == out["tiny-sentiment:fp32"]["perf"]["session"]  # timed in one session


def test_a_gate_straddling_the_line_says_not_enough_evidence(evaluated):
    reg, _, _ = evaluated
    loaded, _, nodes = _load(reg)
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 60).tolist()
    ref = list(labels)
    variant = [1 - v if i == 0 else v for i, v in enumerate(labels)]  # one row of 60 lost: ratio 0.983
    test = {"indices_sha256": "same"}
    model = loaded.model("tiny-sentiment")
    ev = model.evaluation
    model = model.model_copy(update={"evaluation": ev.model_copy(update={
        "gate": ev.gate.model_copy(update={"min_ratio": 0.99})})})
    gate = evaluate._gate(model, nodes["tiny-sentiment:int8"], "fp32",
                          {"metrics": {"accuracy": 1.0}, "predictions": {"labels": labels, "preds": ref},
                           "test": test},
                          {"accuracy": 59 / 60}, {"labels": labels, "preds": variant, "n_classes": 2}, test)
    assert gate["verdict"] == "not enough evidence" and gate["passed"] is False
    assert gate["interval"]["low"] < gate["min_ratio"] <= gate["interval"]["high"]
    assert "more test rows" in gate["reason"]


def test_a_gate_whose_reference_has_no_result_fails_closed(evaluated):
    reg, _, _ = evaluated
    loaded, _, nodes = _load(reg)
    gate = evaluate._gate(loaded.model("tiny-sentiment"), nodes["tiny-sentiment:int8"], "fp32", None,
                          {"accuracy": 1.0, "f1": 1.0})
    assert gate["passed"] is False and "tiny-sentiment:fp32" in gate["reason"]


def test_perf_runs_in_a_child_process_and_reports_its_failure(tmp_path):
    with pytest.raises(ZooError, match="performance run failed .*no config.json"):
        perf.measure(tmp_path, 2, 16, 3)


def test_disk_size_counts_weights_and_excludes_provenance(tmp_path):
    (tmp_path / "model.onnx").write_bytes(b"x" * 100)
    (tmp_path / "config.json").write_bytes(b"y" * 10)
    (tmp_path / "provenance.json").write_bytes(b"z" * 1000)
    (tmp_path / "onnx").mkdir()
    (tmp_path / "onnx" / "model.onnx").write_bytes(b"w" * 50)
    assert perf.disk_size(tmp_path) == (160, 100)


def _app():
    from zoo.cli import app

    return app
