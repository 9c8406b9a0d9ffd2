"""The demo Space: render a family's Gradio Space folder from ``spaces/``, and run it locally with ``zoo demo``.

The folder holds the task's standalone ``app.py`` (copied as is: ``spaces/app.py`` for text classification,
``spaces/<task>/app.py`` for the others), ``variants.json`` / ``table.json`` / ``examples.json`` that configure it
(plus example PNGs from the test split and the network's code for an image Space), a pinned ``requirements.txt`` and
a README with the Space front matter (through huggingface_hub's ``SpaceCardData``). Only variants that were evaluated
and passed their gate are in the demo: the others are never pushed, so the Space could not load them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from zoo import card, ids, nf4_guard, plan, verify
from zoo.errors import ZooError
from zoo.registry import Loaded
from zoo.registry.schema import Task
from zoo.status import gate_passed, read_results
from zoo.store import Store, atomic_dir, read_json, write_json
from zoo.tasks import handler

TEMPLATES = Path(__file__).resolve().parent.parent / "spaces"
# The app of each task, relative to spaces/ (text classification came first and keeps the top-level app.py).
APPS = {Task.text_classification: "app.py", Task.image_classification: "image-classification/app.py",
        Task.text_generation: "text-generation/app.py"}
MAX_CHARS = 1000  # input limit of the demo's text box
QUEUE_SIZE = 64  # requests waiting at most (above 50 clients at once); more are refused with "queue full"
CONCURRENCY = 2  # requests run at once (each runs every variant)
EXAMPLES = 4
MAX_IMAGE_SIDE = 4096  # larger uploads are refused (the models see 16–224 px; this bounds decoding and resizing)
MAX_UPLOAD_MB = 10  # gradio refuses larger files before the app sees them
# Request bodies over this are refused (413) before they are read: text inputs are a few KB of JSON; the image Space
# allows MAX_UPLOAD_MB plus multipart overhead.
MAX_BODY_BYTES = 1_000_000
TOP_K = 3  # labels shown per variant in the image Space
PROMPT_CHARS = 500  # input limit of the text-generation prompt box
MAX_NEW_TOKENS = 128  # upper bound of the new-tokens slider
DEFAULT_NEW_TOKENS = 48
LM_CONCURRENCY = 1  # one generation at a time: each already runs every variant, and CPU threads are shared
LM_QUEUE_SIZE = 16


def templates_dir(loaded: Loaded, task: Task = Task.text_classification) -> Path:
    """The Space templates: a project's own ``spaces/`` beside registry.yaml (when it has the task's app), else
    modelzoo's."""
    own = loaded.root / "spaces"
    return own if (own / APPS[task]).is_file() else TEMPLATES


def render(loaded: Loaded, store: Store, model_id: str) -> Path:
    """Write the Space folder of ``model_id`` to ``store.space(model_id)`` (replacing the previous one).

    Returns:
        The Space folder.

    Raises:
        ZooError: no variant of the model is built, evaluated and passing its gate.
    """
    from huggingface_hub import SpaceCard, SpaceCardData

    model = loaded.model(model_id)
    task = model.task
    nodes = [n for n in plan.make(loaded) if n.model_id == model_id]
    specs, left_out = [], []
    for n in nodes:
        results = read_results(store, n) if store.is_built(n.hash) else None
        if not gate_passed(results):
            left_out.append(n.variant_id)
            continue
        specs.append(_spec(loaded, store, n))
    if not specs:
        raise ZooError(f"{model_id}: no variant is built, evaluated and passing its gate, so the Space would be "
                       f"empty: run `zoo build {model_id}` and `zoo eval {model_id}` first")
    table = card.family_table(loaded, store, model_id)
    if (own := getattr(handler(task), "write_space", None)) is not None:  # a family folder's own Space
        return own(loaded, store, model_id, specs, table, left_out)
    pareto = store.reports(model_id) / "pareto.png"
    title = f"{model_id} variants"
    tdir = templates_dir(loaded, task)
    config = {"title": title, "description": model.description or f"The compressed variants of {model_id}.",
              "task": task.value, "queue_size": QUEUE_SIZE, "concurrency": CONCURRENCY, "variants": specs,
              **_limits(task)}
    # Spaces default to an older Python than the pinned requirements need: name the one they were tested with
    data = SpaceCardData(title=title, sdk="gradio", sdk_version=metadata.version("gradio"), app_file="app.py",
                         python_version=f"{sys.version_info.major}.{sys.version_info.minor}",
                         models=[s["repo_id"] for s in specs], license=model.license.value,
                         tags=["modelzoo", task.value], short_description=_short(model.description))
    readme = SpaceCard.from_template(
        data, template_path=str(tdir / "README.md.j2"), stamp=card.STAMP, model_id=model_id, task=task.value,
        description=config["description"], family_md=card.family_markdown(loaded, table),
        has_pareto=pareto.is_file(), left_out=left_out)
    with atomic_dir(store.space(model_id)) as out:
        shutil.copyfile(tdir / APPS[task], out / "app.py")
        if task != Task.image_classification:  # the apps import the one bitsandbytes CPU-kernel guard
            shutil.copyfile(Path(nf4_guard.__file__), out / "nf4_guard.py")
        write_json(out / "table.json", table)
        if task == Task.image_classification:
            config["examples"] = _example_images(loaded, model_id, out)
            shutil.copyfile(card.code_dir(loaded) / card.VISION_MODULE, out / card.VISION_MODULE)
        else:
            limit = PROMPT_CHARS if task == Task.text_generation else min(MAX_CHARS, 300)
            write_json(out / "examples.json", card.examples(loaded, model_id, EXAMPLES, max_chars=limit))
        write_json(out / "variants.json", config)
        (out / "requirements.txt").write_text(_requirements(tdir, task, specs))
        (out / "README.md").write_text(str(readme))
        if pareto.is_file():
            shutil.copyfile(pareto, out / "pareto.png")
    return store.space(model_id)


def _limits(task: Task) -> dict[str, Any]:
    """The input limits and queue settings of the task's app."""
    if task == Task.image_classification:
        return {"max_side": MAX_IMAGE_SIDE, "max_upload_mb": MAX_UPLOAD_MB, "top_k": TOP_K}
    if task == Task.text_generation:
        return {"max_chars": PROMPT_CHARS, "max_new_tokens": MAX_NEW_TOKENS, "default_new_tokens": DEFAULT_NEW_TOKENS,
                "queue_size": LM_QUEUE_SIZE, "concurrency": LM_CONCURRENCY}
    return {"max_chars": MAX_CHARS}


def _example_images(loaded: Loaded, model_id: str, out: Path) -> list[dict[str, str]]:
    """Save test-split images as ``examples/<n>-<label>.png``; returns ``[{"file", "label"}]``."""
    (out / "examples").mkdir()
    found = []
    for i, (image, label) in enumerate(card.example_images(loaded, model_id, EXAMPLES)):
        rel = f"examples/{i}-{''.join(c if c.isalnum() else '_' for c in label)}.png"
        card.save_png(image, out / rel)
        found.append({"file": rel, "label": label})
    return found


def _short(description: str | None) -> str | None:
    # the Hub caps short_description at 60 characters
    if not description:
        return None
    text = " ".join(description.split())
    return text if len(text) <= 60 else text[:57].rsplit(" ", 1)[0] + "..."


def _spec(loaded: Loaded, store: Store, node: plan.Node) -> dict[str, Any]:
    """What the app needs to load one variant: repo id, format, where the weights are, labels, input length."""
    art = store.artifact(node.hash)
    prov = verify.provenance(art, node.key)
    task = loaded.model(node.model_id).task
    spec = {"repo_id": ids.repo_id(loaded.registry.org, node.model_id, node.variant_id), "variant": node.variant_id,
            "kind": node.kind}
    if task == Task.image_classification:
        # the ONNX graph where there is one (int8, QAT, the fp16 copy of w16a16); PyTorch for safetensors-only ones
        runtime = "onnxruntime" if (art / "model.onnx").is_file() else "torch"
        return {**spec, "format": prov.get("format"), "runtime": runtime, "label_names": prov.get("label_names"),
                "image_size": prov.get("image_size")}
    if task == Task.text_generation:
        fmt = "onnx-genai" if prov.get("format") == "onnx-genai" else "transformers-causal-lm"
        adapter = card.ADAPTER_DIR if prov.get("root") == "nf4-base" else None
        return {**spec, "format": fmt, "dtype": prov.get("dtype"), "adapter_subfolder": adapter,
                "max_length": prov.get("max_length")}
    fmt, subfolder = prov.get("format", "transformers"), None
    if fmt == "bnb-4bit":
        fmt = "transformers"
    if node.kind == "w16a16" and (art / "onnx" / "model.onnx").is_file():
        # fp16 in PyTorch is slow on CPU; the fp16 ONNX graph beside it is what a CPU Space should run
        fmt, subfolder = "onnx", "onnx"
    return {**spec, "format": fmt, "subfolder": subfolder, "label_names": prov.get("label_names"),
            "max_length": prov.get("max_length")}


TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def _requirements(tdir: Path, task: Task, specs: list[dict[str, Any]]) -> str:
    """The pinned packages the task's app imports, for the formats among ``specs``."""
    import jinja2

    if task == Task.image_classification:
        names = ["gradio", "huggingface_hub", "numpy", "pillow", "onnxruntime"]
        if any(s["runtime"] == "torch" for s in specs):
            names += ["torch", "safetensors"]
    else:
        names = ["gradio", "huggingface_hub", "torch", "transformers", "accelerate"]
        if any(s["format"] == "onnx" for s in specs):
            names.append("onnxruntime")
        if any(s["format"] == "onnx-genai" for s in specs):
            names.append("onnxruntime-genai")
        if any(s["kind"] == "qlora-4bit" for s in specs):
            names.append("bitsandbytes")
        if any(s.get("adapter_subfolder") for s in specs):
            names.append("peft")
    pins = {}
    for name in names:
        try:
            pins[name] = metadata.version(name).split("+")[0]  # PyPI has no local builds such as +cpu
        except metadata.PackageNotFoundError:
            raise ZooError(f"the Space needs {name}, which is not installed here: `pip install {name}` so its "
                           "version can be pinned") from None
    if "torch" in pins:  # the CPU build: PyPI's default torch wheel for Linux is the multi-GB CUDA one
        pins["torch"] += "+cpu"
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(tdir), keep_trailing_newline=True)
    return env.get_template("requirements.txt.j2").render(
        stamp=card.STAMP, pins=pins, extra_index=TORCH_CPU_INDEX if "torch" in pins else None)


def demo_settings(task: Task, folder: Path, port: int) -> dict[str, Any]:
    """What ``zoo.demo_server`` needs to serve the task's app: the port, the request-body limit and gradio's
    upload settings."""
    settings: dict[str, Any] = {"port": port, "max_body_bytes": MAX_BODY_BYTES}
    if task == Task.image_classification:
        settings.update(max_body_bytes=(MAX_UPLOAD_MB + 1) * 1_000_000, max_file_size=f"{MAX_UPLOAD_MB}mb",
                        allowed_paths=[str(folder / "examples")])
    return settings


def demo(loaded: Loaded, store: Store, model_id: str, port: int = 7860) -> None:
    """Render the Space and serve its app on 127.0.0.1:``port`` (0: any free port) through ``zoo.demo_server``,
    loading variants from the embedded hub (started for the demo unless ``ZOO_HUB_URL`` names a running one) through
    ``HF_ENDPOINT``, as on a Space. It stops cleanly on Ctrl-C or SIGTERM, and never outlives this process.

    Raises:
        ZooError: a variant of the demo is not in the hub yet, the port is taken, or the app exits with an error.
    """
    import json
    import signal

    from zoo.demo_server import bind
    from zoo.hub import open_hub

    folder = render(loaded, store, model_id)
    if port:
        try:
            bind(port).close()  # a taken port is one line here, before minutes of model loading
        except SystemExit as e:
            raise ZooError(str(e)) from None
    with open_hub("local", store) as hub:
        missing = [s["repo_id"] for s in read_json(folder / "variants.json")["variants"] if not hub.head(s["repo_id"])]
        if missing:
            raise ZooError(f"{model_id}: {', '.join(missing)} not in the embedded hub {store.hub}: run "
                           f"`zoo push {model_id}` first")
        env = {**os.environ, **hub_env(hub.endpoint, hub.token, store), "GRADIO_ANALYTICS_ENABLED": "False"}
        settings = demo_settings(loaded.model(model_id).task, folder, port)
        print(f"demo of {model_id}: loading its variants; the URL follows (Ctrl-C stops it)", file=sys.stderr)
        proc = subprocess.Popen([sys.executable, "-m", "zoo.demo_server", json.dumps(settings)], cwd=folder, env=env)
        forward = signal.signal(signal.SIGTERM, lambda signum, _frame: proc.send_signal(signum))
        try:
            returncode = proc.wait()
        except KeyboardInterrupt:  # the terminal sent SIGINT to both; give the server its graceful shutdown
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
            return
        finally:
            signal.signal(signal.SIGTERM, forward)
            if proc.poll() is None:
                proc.kill()
    if returncode not in (0, -2, -15, 130):
        raise ZooError(f"{model_id}: the demo app exited with status {returncode} (see its output above)")


def hub_env(endpoint: str, token: str | None, store: Store) -> dict[str, str]:
    """The environment that points a Space app (or any huggingface_hub consumer) at the embedded hub, with a cache
    of its own so repo ids never mix with huggingface.co's."""
    env = {"HF_ENDPOINT": endpoint, "HF_HUB_OFFLINE": "0", "HF_HUB_CACHE": str(store.root / "cache" / "hub-demo"),
           "HF_HUB_DISABLE_XET": "1"}
    if token:
        env["HF_TOKEN"] = token
    return env
