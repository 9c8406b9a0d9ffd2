"""Model cards of the tiny image-classification and text-generation families: they parse back with huggingface_hub,
hold the right relation, library, precision tags and metrics for every kind, show the metric's direction, never
leak a build-machine path, and their usage snippets run against the variants as published to the local hub."""

from __future__ import annotations

import ast
import io
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from huggingface_hub import ModelCard
from huggingface_hub.repocard_data import model_index_to_eval_results

from zoo import card, ids, plan, registry
from zoo.families import family_of
from zoo.families.image_classification import family as vision_family
from zoo.families.text_generation import family as lm_family
from zoo.store import Store

# builds and evaluates whole tiny vision and LM zoos (every technique, lm-eval on each LM variant): minutes
pytestmark = pytest.mark.slow

ORG = "testorg"
VISION, LM = "tiny-digits", "tiny-play"
# variant → (base_model_relation, library_name, precision tag); relation None: a ``from: base`` variant whose file base
# names no Hub repo, so base_model and its relation are left out; library None: ONNX and plain PyTorch are file
# formats, not Hub library ids, so library_name is left out (the "onnx"/"pytorch" tags say the format)
EXPECT = {
    VISION: {"fp32": (None, None, "fp32"), "w16a16": ("quantized", None, "w16a16"),
             "int8": ("quantized", None, "w8a8"), "qat": ("quantized", None, "w8a8"),
             "pruned": ("finetune", None, "fp32")},
    LM: {"fp32": (None, "transformers", "fp32"), "w16a16": ("quantized", "transformers", "w16a16"),
         "int8": ("quantized", None, "w8a8"), "int4": ("quantized", None, "w4a8"),
         "qlora-4bit": (None, "transformers", "nf4"),
         "distilled": ("finetune", "transformers", "fp32")},
}
TASKS = {VISION: "image-classification", LM: "text-generation"}
CASES = [(m, v) for m, variants in EXPECT.items() for v in variants]


def publish(evaluated: Path, root: Path, model_id: str) -> Path:
    """Copy an evaluated tiny project to ``root`` once per session: card it, render its Space, push it locally."""
    from rich.console import Console

    from zoo import hub, space

    dest = root / "project"
    if (dest / ".published").is_file():
        return dest / "registry.yaml"
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(evaluated.parent, dest)
    loaded = registry.load(dest / "registry.yaml")
    store = Store.for_registry(loaded.path)
    nodes = plan.make(loaded)
    card.write_cards(loaded, store, nodes)
    space.render(loaded, store, model_id)
    hub.push(loaded, store, nodes, hub="local", allow_gate_failure=True, console=Console(file=io.StringIO()))
    (dest / ".published").touch()
    return dest / "registry.yaml"


@pytest.fixture(scope="session")
def published_vision(evaluated_tiny_vision_zoo, tmp_path_factory) -> Path:
    return publish(evaluated_tiny_vision_zoo, tmp_path_factory.getbasetemp() / "published-vision", VISION)


@pytest.fixture(scope="session")
def published_lm(evaluated_tiny_lm_zoo, tmp_path_factory) -> Path:
    return publish(evaluated_tiny_lm_zoo, tmp_path_factory.getbasetemp() / "published-lm", LM)


@pytest.fixture
def published(request) -> Path:
    """The published project of the model named by the test's ``model_id`` parameter."""
    name = {VISION: "published_vision", LM: "published_lm"}[request.node.callspec.params["model_id"]]
    return request.getfixturevalue(name)


def _store(reg: Path) -> tuple[registry.Loaded, Store]:
    loaded = registry.load(reg)
    return loaded, Store.for_registry(loaded.path)


def _results(store: Store, loaded, variant: str) -> dict:
    node = next(n for n in plan.make(loaded) if n.variant_id == variant)
    return json.loads(store.results(node.hash).read_text())


@pytest.mark.parametrize(("model_id", "variant"), CASES)
def test_card_parses_back_with_relation_library_tags_and_metrics(published, model_id, variant):
    loaded, store = _store(published)
    parsed = ModelCard.load(store.repo(model_id, variant) / "README.md")
    data = parsed.data.to_dict()
    relation, library, precision = EXPECT[model_id][variant]

    assert card.STAMP in parsed.text
    assert data.get("base_model_relation") == relation
    if relation:
        assert data["base_model"] == ids.repo_id(ORG, model_id, loaded.model(model_id).variants[variant].from_)
    assert data["pipeline_tag"] == TASKS[model_id]
    assert data.get("library_name") == library
    assert {variant, precision, loaded.model(model_id).variants[variant].target} <= set(data["tags"])
    name, evals = model_index_to_eval_results(data["model-index"])
    assert name == ids.repo_id(ORG, model_id, variant)
    measured = _results(store, loaded, variant)["metrics"]
    numeric = {k: v for k, v in measured.items() if isinstance(v, int | float)}
    assert set(numeric) >= set(loaded.model(model_id).evaluation.metrics)
    assert {e.metric_type: e.metric_value for e in evals} == pytest.approx(numeric, abs=1e-6)
    assert all(e.task_type == TASKS[model_id] and e.dataset_split == "test" for e in evals)


def test_kind_specific_tags(published_vision, published_lm):
    vision, vstore = _store(published_vision)
    lm, lstore = _store(published_lm)

    def tags(store, model_id, variant):
        return set(ModelCard.load(store.repo(model_id, variant) / "README.md").data.tags)

    assert {"pruning"} <= tags(vstore, VISION, "pruned")
    assert {"quantization-aware-training", "static-quantization", "onnx"} <= tags(vstore, VISION, "qat")
    assert {"static-quantization", "onnx"} <= tags(vstore, VISION, "int8")
    assert {"onnx", "fp16"} <= tags(vstore, VISION, "w16a16")  # the fp16 ONNX graph ships beside the weights
    assert {"distillation"} <= tags(lstore, LM, "distilled")
    assert {"onnxruntime-genai", "onnx"} <= tags(lstore, LM, "int8") and "int4" in tags(lstore, LM, "int4")
    assert {"bf16"} <= tags(lstore, LM, "w16a16") and "onnx" not in tags(lstore, LM, "w16a16")
    assert {"4-bit", "bitsandbytes", "qlora"} <= tags(lstore, LM, "qlora-4bit")
    distilled = ModelCard.load(lstore.repo(LM, "distilled") / "README.md")
    assert f"distilled from the teacher [{ORG}/{LM}-fp32](" in distilled.text


@pytest.mark.parametrize("model_id", [VISION, LM])
def test_family_table_names_the_metric_and_its_direction(published, model_id):
    loaded, store = _store(published)
    metric = {VISION: "top1", LM: "perplexity"}[model_id]
    variants = list(EXPECT[model_id])
    for variant in variants:
        text = (store.repo(model_id, variant) / "README.md").read_text()
        lines = text.split("## The family", 1)[1].splitlines()
        start = next(i for i, line in enumerate(lines) if line.startswith("| variant | kind |"))
        header = lines[start]
        rows = [r for r in lines[start + 2:] if r.startswith("|")][:len(variants)]
        if model_id == LM:
            assert f"| {metric} (test, lower is better) |" in header and "÷ this one's" in header
            assert "lower-is-better, so a ratio above 1 beats fp32" in text
        else:
            assert f"| {metric} (test) |" in header and "lower is better" not in header
        [mine] = [r for r in rows if "◀ this model" in r]
        assert mine.startswith(f"| **{variant}** ◀ this model")
    table = card.family_table(loaded, store, model_id)
    ref = next(r for r in table["rows"] if r["variant"] == "fp32")["value"]
    for row in table["rows"]:
        expected = ref / row["value"] if model_id == LM else row["value"] / ref
        assert row["ratio"] == pytest.approx(expected, abs=5e-5)  # the report rounds ratios to 4 decimals


def _staged_text_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file() and p.suffix in (".json", ".md", ".py", ".txt", ".jinja")]


def test_no_staged_repo_names_a_build_machine_path(published_vision, published_lm):
    for reg in (published_vision, published_lm):
        loaded, store = _store(reg)
        for repo in (store.root / "repos").iterdir():
            for f in _staged_text_files(repo):
                text = f.read_text(errors="replace")
                assert str(loaded.root) not in text and str(store.root) not in text, f"{f} names a local path"


def test_adapter_repo_points_at_a_repo_id_never_a_local_folder(published_lm, tmp_path):
    loaded, store = _store(published_lm)
    adapter = store.repo(LM, "qlora-4bit-adapter")
    assert {"adapter_config.json", "adapter_model.safetensors", "README.md"} <= {p.name for p in adapter.iterdir()}
    assert json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"] is None
    node = next(n for n in plan.make(loaded) if n.variant_id == "qlora-4bit")
    built = json.loads((store.artifact(node.hash) / "adapter" / "adapter_config.json").read_text())
    assert Path(built["base_model_name_or_path"]).is_absolute()  # the artifact keeps what peft wrote
    data = ModelCard.load(adapter / "README.md").data.to_dict()
    assert data["library_name"] == "peft" and "base_model" not in data
    # root: base (the LM default since QLoRA repos are published the bnb-4bit way): the NF4 root needs its adapter,
    # so the variant's repo keeps adapter/ beside it, and the -adapter repo holds the same adapter on its own
    assert (store.repo(LM, "qlora-4bit") / "adapter" / "adapter_config.json").is_file()

    project = tmp_path / "project"
    shutil.copytree(published_lm.parent, project, ignore=shutil.ignore_patterns("hub"))
    (project / "assets" / "tiny-llama" / "README.md").write_text(
        'A tiny Llama.\n\n```python\nmodel = AutoModelForCausalLM.from_pretrained("upstream-org/tiny-llama")\n```\n')
    loaded, store = _store(project / "registry.yaml")
    nodes = [n for n in plan.make(loaded) if n.variant_id in ("fp32", "qlora-4bit")]
    card.write_cards(loaded, store, nodes)
    expect = {"fp32": "finetune", "qlora-4bit": "quantized", "qlora-4bit-adapter": "adapter"}
    for repo, relation in expect.items():
        data = ModelCard.load(store.repo(LM, repo) / "README.md").data.to_dict()
        assert (data["base_model"], data["base_model_relation"]) == ("upstream-org/tiny-llama", relation)
    config = json.loads((store.repo(LM, "qlora-4bit-adapter") / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "upstream-org/tiny-llama"


def _gguf(path: Path, **meta: str) -> Path:
    from gguf import GGUFWriter

    writer = GGUFWriter(str(path), "llama")
    for key, value in meta.items():
        writer.add_string(key, value)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_gguf_base_names_its_upstream_repo_from_metadata_or_says_why_not(tmp_path, published_lm):
    named = {"general.organization": "HuggingFaceTB", "general.basename": "smollm2", "general.size_label": "135M",
             "general.name": "Smollm2 135M 8k Lc100K Mix1 Ep2"}
    smol = _gguf(tmp_path / "SmolLM2-135M-Instruct.Q4_1.gguf", **named)
    assert card.gguf_upstream(smol)[0] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    other = _gguf(tmp_path / "my-model.Q8_0.gguf", **named)  # the file name does not hold basename and size
    found, why = card.gguf_upstream(other)
    assert found is None and "Smollm2 135M" in why and "no Hub repository" in why
    url = _gguf(tmp_path / "x.gguf", **{"general.source.url": "https://huggingface.co/org-a/Model-B"})
    assert card.gguf_upstream(url)[0] == "org-a/Model-B"

    project = tmp_path / "project"
    shutil.copytree(published_lm.parent, project, ignore=shutil.ignore_patterns(".zoo"))
    shutil.copyfile(smol, project / "assets" / smol.name)
    reg = project / "registry.yaml"
    reg.write_text(reg.read_text().replace('source: "file:assets/tiny-llama"', f'source: "file:assets/{smol.name}"'))
    up = card.upstream(registry.load(reg), LM)
    assert up.repo_id == up.ref == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert "GGUF" in up.text and "general.organization" in up.text
    nameless = _gguf(tmp_path / "nameless.gguf", **{"general.name": "Smollm2 135M 8k Lc100K Mix1 Ep2"})
    shutil.copyfile(nameless, project / "assets" / smol.name)  # same file name, metadata without an organization
    up = card.upstream(registry.load(reg), LM)
    assert up.repo_id is None and "left out of the metadata" in up.text


# ---------------------------------------------------------------- the snippets, run as written


def _snapshot(store: Store, repo_id: str) -> Path:
    from hub_helpers import snapshot

    return snapshot(store, repo_id)


def _run_blocks(store: Store, repo: str, model_id: str, monkeypatch, capsys) -> list[tuple[str, str]]:
    """Exec every python block of a staged card with repo ids pointed at the local hub; returns (code, stdout)."""
    import huggingface_hub

    text = (store.repo(model_id, repo) / "README.md").read_text()
    # usage snippets only: the LM section's lm_eval rerun has its own test
    blocks = [b for b in re.findall(r"```python\n(.*?)```", text, flags=re.S) if "simple_evaluate" not in b]
    assert blocks, "the card has no python usage snippet"
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda path, **_: str(path))
    out = []
    for code in blocks:
        runnable = code
        for rid in set(re.findall(rf'"({ORG}/[\w.-]+)"', code)):
            runnable = runnable.replace(f'"{rid}"', f'"{_snapshot(store, rid)}"')
        exec(compile(runnable, f"{repo}-usage", "exec"), {})
        out.append((code, capsys.readouterr().out))
    return out


@pytest.mark.parametrize("variant", list(EXPECT[VISION]))
def test_vision_snippets_run_and_agree_with_the_zoo_loader(published_vision, variant, monkeypatch, capsys):
    from PIL import Image

    from zoo.families.image_classification import load_image_classifier

    loaded, store = _store(published_vision)
    snapshot = _snapshot(store, ids.repo_id(ORG, VISION, variant))
    image = np.asarray(Image.open(snapshot / vision_family.EXAMPLE_PNG).convert("RGB"))[None]
    labels = loaded.model(VISION).dataset.labels
    runs = _run_blocks(store, variant, VISION, monkeypatch, capsys)
    assert len(runs) == (2 if variant == "w16a16" else 1)
    for code, printed in runs:
        scores = ast.literal_eval(printed.strip().splitlines()[-1])
        assert set(scores) <= set(labels) and len(scores) == min(3, len(labels))
        runtime = "onnx" if "onnxruntime" in code else "torch"
        expected = load_image_classifier(snapshot, prefer=runtime).predict(image)[0]
        assert next(iter(scores)) == expected, (runtime, scores)


@pytest.mark.parametrize("repo", [*EXPECT[LM], "qlora-4bit-adapter"])
def test_lm_snippets_run_and_agree_with_the_zoo_loader(published_lm, repo, monkeypatch, capsys):
    from zoo.families.text_generation import load_generator

    loaded, store = _store(published_lm)
    monkeypatch.chdir(loaded.root)  # the adapter's file: base is named relative to the project
    [(code, printed)] = _run_blocks(store, repo, LM, monkeypatch, capsys)
    prompt = family_of("text-generation").examples(loaded.model(LM), loaded.root, "d", 1)[0]
    assert json.dumps(prompt) in code
    text = printed.rstrip("\n")
    assert text.strip(), "the snippet generated nothing"
    if repo.endswith("-adapter"):
        return  # the adapter on a freshly quantized base is not the merged model; that it runs is the check
    expected = load_generator(_snapshot(store, ids.repo_id(ORG, LM, repo))).continue_text(
        prompt, lm_family.SNIPPET_NEW_TOKENS)
    assert text.strip() == expected.strip()


def test_an_unmerged_nf4_root_keeps_its_adapter_and_its_snippet_runs(published_lm, tmp_path, capsys):
    from zoo import build

    project = tmp_path / "project"
    shutil.copytree(published_lm.parent, project, ignore=shutil.ignore_patterns("hub", "repos", "spaces"))
    recipe = project / "recipes" / "lm-qlora.yaml"
    recipe.write_text(recipe.read_text() + "root: base\n")
    loaded, store = _store(project / "registry.yaml")
    node = next(n for n in plan.make(loaded) if n.variant_id == "qlora-4bit")
    build.build(loaded, store, [node], log=lambda *_: None)
    card.write_cards(loaded, store, [node])
    repo = store.repo(LM, "qlora-4bit")
    assert (repo / "adapter" / "adapter_model.safetensors").is_file() and not (repo / "adapter" / "README.md").exists()
    assert json.loads((repo / "adapter" / "adapter_config.json").read_text())["base_model_name_or_path"] is None
    assert json.loads((store.artifact(node.hash) / "adapter" / "adapter_config.json").read_text())[
        "base_model_name_or_path"]  # the staged copy was replaced, not written through the hard link
    text = (repo / "README.md").read_text()
    [code] = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert 'subfolder="adapter"' in code
    exec(compile(code.replace(f'"{ids.repo_id(ORG, LM, "qlora-4bit")}"', f'"{repo}"'), "nf4-base", "exec"), {})
    assert capsys.readouterr().out.strip()


def test_lm_card_shows_generation_quality_and_its_lm_eval_command_reruns_it(published_lm, tmp_path):
    """The card's table has every variant's generation metrics with intervals and a continuation per variant; the
    `lm_eval` command it prints, run in a copy of the staged repo, gives the numbers the zoo recorded."""
    import subprocess
    import sys

    _, store = _store(published_lm)
    text = (store.repo(LM, "fp32") / "README.md").read_text()
    section = text[text.index("## Generation quality"):text.index("## The family")]
    for variant in ("fp32", "w16a16", "int8", "qlora-4bit", "distilled"):
        row = next(line for line in section.splitlines() if line.startswith(f"| {variant} |")
                   or line.startswith(f"| **{variant}** |"))
        assert row.count("[") >= 5, row  # perplexity, accuracy and three generation metrics with their intervals
        assert re.search(rf"^- (\*\*{variant}\*\*|`{variant}`): \S", section, re.M), variant
    command = re.search(r"```bash\n(.*?)```", section, re.S).group(1).strip().splitlines()[-1]
    assert command.startswith("lm_eval ") and "--include_path lm_eval_task" in command
    repo = tmp_path / "fp32"
    shutil.copytree(store.repo(LM, "fp32"), repo)
    lm_eval = Path(sys.executable).parent / "lm_eval"
    args = [str(lm_eval), *command.split()[1:], "--output_path", "out"]
    subprocess.run(args, cwd=repo, check=True, capture_output=True, timeout=900)
    got = json.loads(next((repo / "out").rglob("results_*.json")).read_text())["results"]
    recorded = json.loads((repo / "results.json").read_text())
    assert got["tiny_play_cloze"]["acc,none"] == pytest.approx(recorded["metrics"]["exact_match"], abs=1e-9)
    assert got["tiny_play_continue"]["repeated_ngram_rate,none"] == pytest.approx(
        recorded["metrics"]["repeated_ngram_rate"], abs=1e-9)
    zoo_ppl = recorded["details"]["lm_eval"]["aggregates"]["tiny_play_passages"]["word_perplexity"]
    assert got["tiny_play_passages"]["word_perplexity,none"] == pytest.approx(zoo_ppl, rel=1e-4)
