"""The demo Spaces of the tiny image-classification and text-generation families: the right app per task, its pinned
requirements and example inputs, and the apps themselves started on 127.0.0.1 from the local hub and driven with
gradio_client (every variant answers, the LM app streams, bad input is an error in the UI)."""

from __future__ import annotations

import ast
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from huggingface_hub import SpaceCard
from test_card_families import LM, VISION, published_lm, published_vision  # noqa: F401  (shared, session-wide)
from test_space import start_app, stop_app

from zoo import ids, plan, registry, space
from zoo.families import FAMILIES, family_of
from zoo.families.image_classification import family as vision_family
from zoo.families.text_generation import family as lm_family
from zoo.status import gate_passed, read_results
from zoo.store import Store

# builds and evaluates whole tiny vision and LM zoos (every technique, lm-eval on each LM variant): minutes
pytestmark = pytest.mark.slow

# what each app (and the code beside it) imports → the distribution requirements.txt must pin
DISTRIBUTIONS = {"gradio": "gradio", "numpy": "numpy", "PIL": "pillow", "onnxruntime": "onnxruntime",
                 "torch": "torch", "safetensors": "safetensors", "huggingface_hub": "huggingface_hub",
                 "transformers": "transformers", "onnxruntime_genai": "onnxruntime-genai", "peft": "peft"}


def _loaded(reg: Path) -> tuple[registry.Loaded, Store]:
    loaded = registry.load(reg)
    return loaded, Store.for_registry(loaded.path)


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = {a.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names}
    found |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    return found - set(sys.stdlib_module_names) - {"__future__", "efficientnet_lite", "nf4_guard"}


@pytest.mark.parametrize(("model_id", "fixture"), [(VISION, "published_vision"), (LM, "published_lm")])
def test_space_has_the_tasks_app_front_matter_and_pins_what_it_imports(request, model_id, fixture):
    import gradio

    loaded, store = _loaded(request.getfixturevalue(fixture))
    folder = store.space(model_id)
    task = loaded.model(model_id).task
    assert (folder / "app.py").read_bytes() == space.app_file(loaded, family_of(task)).read_bytes()
    data = SpaceCard.load(folder / "README.md").data.to_dict()
    passed = [n.variant_id for n in plan.make(loaded) if gate_passed(read_results(store, n))]
    assert passed
    assert data["sdk"] == "gradio" and data["sdk_version"] == gradio.__version__ and data["app_file"] == "app.py"
    assert data["models"] == [ids.repo_id("testorg", model_id, v) for v in passed]
    assert task in data["tags"]
    pins = dict(line.split("==") for line in (folder / "requirements.txt").read_text().splitlines()
                if line and not line.startswith(("#", "-")))  # "--extra-index-url" names the CPU torch index
    code = [folder / "app.py", *folder.glob("efficientnet_lite.py"), *folder.glob("nf4_guard.py")]
    imported = set().union(*(_imports(p) for p in code))
    assert "zoo" not in imported  # standalone: a Space has no modelzoo installed
    specs = json.loads((folder / "variants.json").read_text())["variants"]
    optional = {"peft"} if not any(s.get("adapter_subfolder") for s in specs) else set()
    assert {DISTRIBUTIONS[m] for m in imported - optional} <= set(pins), (imported, pins)
    config = json.loads((folder / "variants.json").read_text())
    assert config["task"] == task and config["queue_size"] > 0 and config["concurrency"] >= 1


def test_vision_space_examples_are_test_split_pngs(published_vision):  # noqa: F811
    from PIL import Image

    loaded, store = _loaded(published_vision)
    folder = store.space(VISION)
    config = json.loads((folder / "variants.json").read_text())
    test_images = vision_family.FAMILY.labelled_examples(loaded.model(VISION), loaded.root, "d", 10_000)
    assert len(config["examples"]) == vision_family.SPACE_EXAMPLES
    assert {e["label"] for e in config["examples"]} == set(loaded.model(VISION).dataset.labels)
    for e in config["examples"]:
        png = np.asarray(Image.open(folder / e["file"]).convert("RGB"))
        assert any(lbl == e["label"] and np.array_equal(png, img) for img, lbl in test_images), e
    assert (folder / vision_family.VISION_MODULE).is_file()  # the fp32 and pruned variants are PyTorch-only
    runtimes = {s["variant"]: s["runtime"] for s in config["variants"]}
    assert runtimes == {"fp32": "torch", "w16a16": "onnxruntime", "int8": "onnxruntime", "qat": "onnxruntime",
                        "pruned": "torch"}


def test_lm_space_examples_are_openings_of_held_out_passages(published_lm):  # noqa: F811
    from zoo.families.text_generation.data import load_splits

    loaded, store = _loaded(published_lm)
    examples = json.loads((store.space(LM) / "examples.json").read_text())
    test = [" ".join(t.split()) for t in load_splits(loaded.model(LM).dataset, loaded.root).test]
    assert examples and all(any(t.startswith(e) for t in test) for e in examples)
    config = json.loads((store.space(LM) / "variants.json").read_text())
    assert config["max_new_tokens"] == lm_family.MAX_NEW_TOKENS and config["concurrency"] == 1


def test_space_refuses_a_family_with_nothing_evaluated(tiny_vision_zoo):
    from zoo.errors import ZooError

    loaded, store = _loaded(tiny_vision_zoo)
    with pytest.raises(ZooError, match=rf"{VISION}: no variant is built, evaluated and passing its gate"):
        space.render(loaded, store, VISION)


# ---------------------------------------------------------------- the apps, running


@pytest.fixture(scope="module")
def vision_app(published_vision, tmp_path_factory) -> Iterator[tuple[str, Path, Path]]:  # noqa: F811
    loaded, store = _loaded(published_vision)
    proc, url = start_app(store.space(VISION), store.hub, tmp_path_factory.mktemp("vision-app") / "app.log")
    try:
        yield url, store.space(VISION), published_vision
    finally:
        stop_app(proc)


@pytest.fixture(scope="module")
def lm_app(published_lm, tmp_path_factory) -> Iterator[tuple[str, Path, Path]]:  # noqa: F811
    loaded, store = _loaded(published_lm)
    proc, url = start_app(store.space(LM), store.hub, tmp_path_factory.mktemp("lm-app") / "app.log")
    try:
        yield url, store.space(LM), published_lm
    finally:
        stop_app(proc)


@pytest.mark.slow
def test_every_vision_variant_answers_and_agrees_with_the_zoo_loader(vision_app):
    from gradio_client import Client, handle_file
    from PIL import Image

    from zoo.families.image_classification import load_image_classifier

    url, folder, reg = vision_app
    loaded, store = _loaded(reg)
    config = json.loads((folder / "variants.json").read_text())
    nodes = {n.variant_id: n for n in plan.make(loaded)}
    loaders = {s["variant"]: load_image_classifier(store.artifact(nodes[s["variant"]].hash),
                                                   prefer="onnx" if s["runtime"] == "onnxruntime" else "torch")
               for s in config["variants"]}
    client = Client(url, verbose=False)
    for example in config["examples"]:
        image = np.asarray(Image.open(folder / example["file"]).convert("RGB"))[None]
        summary, *labels = client.predict(handle_file(str(folder / example["file"])), api_name="/classify")
        assert [row[0] for row in summary["data"]] == [s["variant"] for s in config["variants"]]
        for row, out, spec in zip(summary["data"], labels, config["variants"], strict=True):
            name, _kind, runtime, top, score, ms = row
            assert runtime == spec["runtime"] and top in spec["label_names"] and 0 < score <= 1 and ms > 0
            assert out["label"] == top == loaders[name].predict(image)[0]
            assert len(out["confidences"]) == min(vision_family.TOP_K, len(spec["label_names"]))


@pytest.mark.slow
def test_bad_images_are_errors_in_the_ui(vision_app, tmp_path):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError
    from PIL import Image

    client = Client(vision_app[0], verbose=False)
    with pytest.raises(AppError, match="Upload an image"):
        client.predict(None, api_name="/classify")
    wide = tmp_path / "wide.png"
    Image.new("RGB", (vision_family.MAX_IMAGE_SIDE + 1, 4)).save(wide)
    with pytest.raises(AppError, match=f"the limit is {vision_family.MAX_IMAGE_SIDE} px"):
        client.predict(handle_file(str(wide)), api_name="/classify")


@pytest.mark.slow
def test_every_lm_variant_streams_its_greedy_continuation(lm_app):
    from gradio_client import Client

    from zoo.families.text_generation import load_generator

    url, folder, reg = lm_app
    loaded, store = _loaded(reg)
    config = json.loads((folder / "variants.json").read_text())
    prompt = json.loads((folder / "examples.json").read_text())[0]
    new_tokens = 6
    client = Client(url, verbose=False)
    job = client.submit(prompt, new_tokens, False, api_name="/generate")
    summary, *texts = job.result(timeout=300)
    updates = job.outputs()
    assert len(updates) > len(config["variants"])  # streamed: more than one update per variant
    names = [s["variant"] for s in config["variants"]]
    assert [row[0] for row in summary["data"]] == names
    nodes = {n.variant_id: n for n in plan.make(loaded)}
    for row, text, name in zip(summary["data"], texts, names, strict=True):
        _name, _kind, _dtype, state, ttft_ms, tokens, per_s = row
        assert state == "done" and 0 < tokens <= new_tokens and ttft_ms > 0 and per_s > 0
        expected = load_generator(store.artifact(nodes[name].hash)).continue_text(prompt, new_tokens)
        assert text.strip() == expected.strip(), name
    first = updates[0]
    assert first[0]["data"][-1][3] == "waiting"  # later variants wait while the first one streams


@pytest.mark.slow
@pytest.mark.parametrize(("prompt", "tokens", "message"), [
    ("   ", 8, "Type a prompt"),
    ("x" * (lm_family.PROMPT_CHARS + 1), 8, f"the limit is {lm_family.PROMPT_CHARS}"),
    ("the ghost", lm_family.MAX_NEW_TOKENS + 1, "1 and 128|maximum|greater"),
])
def test_bad_prompts_are_errors_in_the_ui(lm_app, prompt, tokens, message):
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    client = Client(lm_app[0], verbose=False)
    with pytest.raises((AppError, ValueError), match=message):
        client.predict(prompt, tokens, False, api_name="/generate")


def test_every_family_has_an_app_or_renders_its_own_space():
    for family in FAMILIES:
        own = type(family).write_space is not type(family).__mro__[-2].write_space
        assert own or (family.folder / "space" / "app.py").is_file(), family.task
