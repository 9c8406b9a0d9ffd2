"""The demo Space: render a family's Gradio Space folder from ``spaces/``, and run it locally with ``zoo demo``.

The folder holds the family's standalone ``app.py`` (copied as is from its folder's ``space/app.py``, or from a
project's own ``spaces/<task>/app.py``), ``variants.json`` / ``table.json`` that configure it, the files the family
adds (example inputs, code its app imports), a pinned ``requirements.txt`` and a README with the Space front matter
(through huggingface_hub's ``SpaceCardData``). Only variants that were evaluated
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

from zoo import card, ids, plan, verify
from zoo.errors import ZooError
from zoo.families import Family, family_of
from zoo.registry import Loaded
from zoo.status import gate_passed, read_results
from zoo.store import Store, atomic_dir, read_json, write_json

TEMPLATES = Path(__file__).resolve().parent.parent / "spaces"
QUEUE_SIZE = 64  # requests waiting at most (above 50 clients at once); more are refused with "queue full"
CONCURRENCY = 2  # requests run at once (each runs every variant)
# Request bodies over this are refused (413) before they are read: inputs are a few KB of JSON; a family that takes
# uploads raises it in its demo_settings.
MAX_BODY_BYTES = 1_000_000


def templates_dir(loaded: Loaded) -> Path:
    """The Space README and requirements templates: a project's own ``spaces/`` beside registry.yaml, else
    modelzoo's."""
    own = loaded.root / "spaces"
    return own if (own / "README.md.j2").is_file() else TEMPLATES


def app_file(loaded: Loaded, family: Family) -> Path:
    """The family's app: a project's own ``spaces/<task>/app.py``, else the one in the family's folder."""
    own = loaded.root / "spaces" / family.task / "app.py"
    return own if own.is_file() else family.folder / "space" / "app.py"


def render(loaded: Loaded, store: Store, model_id: str) -> Path:
    """Write the Space folder of ``model_id`` to ``store.space(model_id)`` (replacing the previous one).

    Returns:
        The Space folder.

    Raises:
        ZooError: no variant of the model is built, evaluated and passing its gate.
    """
    from huggingface_hub import SpaceCard, SpaceCardData

    model = loaded.model(model_id)
    family = family_of(model.task)
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
    if (own := family.write_space(loaded, store, model_id, specs, table, left_out)) is not None:
        return own
    pareto = store.reports(model_id) / "pareto.png"
    title = f"{model_id} variants"
    tdir = templates_dir(loaded)
    config = {"title": title, "description": model.description or f"The compressed variants of {model_id}.",
              "task": model.task, "queue_size": QUEUE_SIZE, "concurrency": CONCURRENCY, "variants": specs,
              **family.space_limits()}
    # Spaces default to an older Python than the pinned requirements need: name the one they were tested with
    data = SpaceCardData(title=title, sdk="gradio", sdk_version=metadata.version("gradio"), app_file="app.py",
                         python_version=f"{sys.version_info.major}.{sys.version_info.minor}",
                         models=[s["repo_id"] for s in specs], license=model.license.value,
                         tags=["modelzoo", model.task], short_description=_short(model.description))
    readme = SpaceCard.from_template(
        data, template_path=str(tdir / "README.md.j2"), stamp=card.STAMP, model_id=model_id, task=model.task,
        how_to_use=family.space_intro.format(model_id=model_id),
        description=config["description"], family_md=card.family_markdown(loaded, table),
        has_pareto=pareto.is_file(), left_out=left_out)
    with atomic_dir(store.space(model_id)) as out:
        shutil.copyfile(app_file(loaded, family), out / "app.py")
        write_json(out / "table.json", table)
        family.space_files(loaded, model_id, out, config)
        write_json(out / "variants.json", config)
        (out / "requirements.txt").write_text(_requirements(tdir, family.space_requirements(specs)))
        (out / "README.md").write_text(str(readme))
        if pareto.is_file():
            shutil.copyfile(pareto, out / "pareto.png")
    return store.space(model_id)


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
    family = family_of(loaded.model(node.model_id).task)
    spec = {"repo_id": ids.repo_id(loaded.registry.org, node.model_id, node.variant_id), "variant": node.variant_id,
            "kind": node.kind}
    return {**spec, **family.space_spec(node, art, prov)}


TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def _requirements(tdir: Path, names: list[str]) -> str:
    """The pinned requirements.txt of the packages an app imports (torch from the CPU index)."""
    import jinja2

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


def demo_settings(family: Family, folder: Path, port: int) -> dict[str, Any]:
    """What ``zoo.demo_server`` needs to serve the family's app: the port, the request-body limit and gradio's
    upload settings."""
    return {"port": port, "max_body_bytes": MAX_BODY_BYTES, **family.demo_settings(folder)}


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
        settings = demo_settings(family_of(loaded.model(model_id).task), folder, port)
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
