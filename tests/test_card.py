"""Model cards of every tiny variant: they parse back with huggingface_hub, hold the right relation and metrics,
list the whole family, and their usage snippets run against the variant as published to the local hub."""

from __future__ import annotations

import io
import json
import re
import shutil
from pathlib import Path

import pytest
from huggingface_hub import ModelCard
from huggingface_hub.repocard_data import model_index_to_eval_results

from zoo import card, ids, plan, registry
from zoo.errors import ZooError
from zoo.store import Store

MODEL = "tiny-sentiment"
ORG = "testorg"
RELATIONS = {"fp32": None, "w16a16": "quantized", "int8": "quantized", "qlora-4bit": None,
             "distilled": "finetune"}  # fp32 and qlora-4bit come from a file: base that names no Hub repo
# None: ONNX is a file format, not a Hub library id (huggingface.js model-libraries); the "onnx" tag says it
LIBRARIES = {"fp32": "transformers", "w16a16": "transformers", "int8": None, "qlora-4bit": "transformers",
             "distilled": "transformers"}
PRECISION = {"fp32": "fp32", "w16a16": "w16a16", "int8": "w8a8", "qlora-4bit": "nf4", "distilled": "fp32"}


def publish(built_registry: Path, root: Path) -> Path:
    """Copy the built tiny project to ``root`` once per session: evaluate, card, render the Space, push locally."""
    from rich.console import Console

    from zoo import evaluate, hub, space

    dest = root / "project"
    if (dest / ".published").is_file():
        return dest / "registry.yaml"
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(built_registry.parent, dest)
    loaded = registry.load(dest / "registry.yaml")
    store = Store.for_registry(loaded.path)
    nodes = plan.make(loaded)
    said: list[str] = []
    results = evaluate.evaluate(loaded, store, nodes, log=lambda *a: said.append(" ".join(map(str, a))))
    assert set(results) == {n.key for n in nodes}, f"not every tiny variant was evaluated: {said}"
    card.write_cards(loaded, store, nodes)
    space.render(loaded, store, MODEL)
    hub.push(loaded, store, nodes, hub="local", allow_gate_failure=True, console=Console(file=io.StringIO()))
    (dest / ".published").touch()
    return dest / "registry.yaml"


@pytest.fixture(scope="session")
def published(built_tiny_zoo, tmp_path_factory) -> Path:
    """The tiny project, evaluated, carded and pushed to its local hub (shared by the card, Space and browser tests)."""
    return publish(built_tiny_zoo, tmp_path_factory.getbasetemp() / "published-tiny")


def _store(reg: Path) -> tuple[registry.Loaded, Store]:
    loaded = registry.load(reg)
    return loaded, Store.for_registry(loaded.path)


def _results(store: Store, loaded, variant: str) -> dict:
    node = next(n for n in plan.make(loaded) if n.variant_id == variant)
    return json.loads(store.results(node.hash).read_text())


@pytest.mark.parametrize("variant", list(RELATIONS))
def test_card_parses_back_with_metadata_and_metrics(published, variant):
    loaded, store = _store(published)
    path = store.repo(MODEL, variant) / "README.md"
    loaded_card = ModelCard.load(path)
    data = loaded_card.data.to_dict()

    assert card.STAMP in loaded_card.text
    assert data.get("base_model_relation") == RELATIONS[variant]
    assert data["license"] == "apache-2.0"
    assert data["pipeline_tag"] == "text-classification"
    assert data.get("library_name") == LIBRARIES[variant]
    assert {variant, PRECISION[variant], loaded.model(MODEL).variants[variant].target} <= set(data["tags"])
    name, evals = model_index_to_eval_results(data["model-index"])
    assert name == ids.repo_id(ORG, MODEL, variant)
    measured = _results(store, loaded, variant)["metrics"]
    assert {e.metric_type: e.metric_value for e in evals} == pytest.approx(measured, abs=1e-6)
    assert all(e.task_type == "text-classification" and e.dataset_split == "test" for e in evals)
    assert json.loads((store.repo(MODEL, variant) / "results.json").read_text())["metrics"] == measured


def test_base_model_names_the_parent_or_says_why_not(published):
    loaded, store = _store(published)
    fp32 = ModelCard.load(store.repo(MODEL, "fp32") / "README.md")
    assert "base_model" not in fp32.data.to_dict()
    assert "names no Hub repository" in fp32.text
    for variant in ("w16a16", "int8", "distilled"):
        data = ModelCard.load(store.repo(MODEL, variant) / "README.md").data.to_dict()
        assert data["base_model"] == ids.repo_id(ORG, MODEL, "fp32")
    distilled = ModelCard.load(store.repo(MODEL, "distilled") / "README.md")
    assert "distillation" in distilled.data.tags
    assert f"distilled from the teacher [{ORG}/{MODEL}-fp32](" in distilled.text


def test_a_base_that_names_its_hub_repo_becomes_base_model(published, tmp_path):
    project = tmp_path / "project"
    shutil.copytree(published.parent, project, ignore=shutil.ignore_patterns("hub"))
    (project / "assets" / "tiny-bert" / "README.md").write_text(
        'A tiny BERT.\n\n```python\nmodel = AutoModel.from_pretrained("upstream-org/tiny-bert")\n```\n')
    loaded, store = _store(project / "registry.yaml")
    nodes = [n for n in plan.make(loaded) if n.variant_id in ("fp32", "qlora-4bit")]
    card.write_cards(loaded, store, nodes)
    expect = {"fp32": "finetune", "qlora-4bit": "quantized", "qlora-4bit-adapter": "adapter"}
    for repo, relation in expect.items():
        data = ModelCard.load(store.repo(MODEL, repo) / "README.md").data.to_dict()
        assert (data["base_model"], data["base_model_relation"]) == ("upstream-org/tiny-bert", relation)


def test_qlora_variant_has_a_second_repo_for_its_adapter(published):
    loaded, store = _store(published)
    merged = store.repo(MODEL, "qlora-4bit")
    adapter = store.repo(MODEL, "qlora-4bit-adapter")
    assert not (merged / "adapter").exists()
    assert "quantization_config" in json.loads((merged / "config.json").read_text())
    assert {"adapter_config.json", "adapter_model.safetensors", "README.md"} <= {p.name for p in adapter.iterdir()}
    data = ModelCard.load(adapter / "README.md").data.to_dict()
    assert "base_model" not in data  # the tiny base names no Hub repo; see the test above for the relation
    assert data["library_name"] == "peft"
    assert {"lora", "nf4", "qlora-4bit"} <= set(data["tags"])


@pytest.mark.parametrize("variant", list(RELATIONS))
def test_family_table_lists_every_variant_and_highlights_this_one(published, variant):
    loaded, store = _store(published)
    text = (store.repo(MODEL, variant) / "README.md").read_text()
    lines = text.split("## The family", 1)[1].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| variant | kind |"))
    end = next(i for i in range(start, len(lines)) if not lines[i].startswith("|"))
    rows = lines[start + 2:end]
    assert len(rows) == len(RELATIONS)
    highlighted = [r for r in rows if "◀ this model" in r]
    assert len(highlighted) == 1 and highlighted[0].startswith(f"| **{variant}** ◀ this model")
    for other in set(RELATIONS) - {variant}:
        assert any(r.startswith(f"| [{other}](https://huggingface.co/{ORG}/{MODEL}-{other})") for r in rows)
    family = (store.repo(MODEL, "family") / "README.md").read_text()
    assert card.STAMP in family and all(f"[{v}](" in family for v in RELATIONS)


def _snapshot(store: Store, repo_id: str) -> Path:
    from hub_helpers import snapshot

    return snapshot(store, repo_id)


@pytest.mark.parametrize("repo", [*RELATIONS, "qlora-4bit-adapter"])
def test_usage_snippets_run_against_the_published_variant(published, repo, monkeypatch, capsys):
    loaded, store = _store(published)
    text = (store.repo(MODEL, repo) / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks, "the card has no python usage snippet"
    monkeypatch.chdir(loaded.root)  # a file: base is named relative to the project, as in registry.yaml
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda path, **_: str(path))  # already a snapshot
    labels = loaded.model(MODEL).dataset.labels
    for code in blocks:
        for rid in set(re.findall(rf'"({ORG}/[\w.-]+)"', code)):
            code = code.replace(f'"{rid}"', f'"{_snapshot(store, rid)}"')
        exec(compile(code, f"{repo}-usage", "exec"), {})
        printed = capsys.readouterr().out
        assert all(label in printed for label in labels), printed


def test_card_of_an_unevaluated_variant_still_renders(published, tmp_path):
    project = tmp_path / "project"
    shutil.copytree(published.parent, project, ignore=shutil.ignore_patterns("hub"))
    loaded, store = _store(project / "registry.yaml")
    node = next(n for n in plan.make(loaded) if n.variant_id == "int8")
    store.results(node.hash).unlink()
    (store.repo(MODEL, "int8") / "README.md").write_text("hand-edited, stale\n")
    [path, _family] = card.write_cards(loaded, store, [node])
    text = path.read_text()
    assert "**not evaluated**" in text and "hand-edited" not in text
    assert "model-index" not in ModelCard.load(path).data.to_dict()
    assert not (path.parent / "results.json").exists()


def test_unbuilt_variant_has_no_card(tiny_zoo):
    loaded, store = _store(tiny_zoo)
    with pytest.raises(ZooError, match=r"tiny-sentiment:fp32: not built.*zoo build tiny-sentiment:fp32"):
        card.write_cards(loaded, store, plan.make(loaded)[:1])
