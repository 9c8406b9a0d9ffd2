"""What the family adds to model repos (the example image, ``detector.py``) and its Space (app, examples, config)."""

from __future__ import annotations

import shutil
from importlib import metadata
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
MAX_SIDE = 2048  # Space uploads larger than this a side are refused (decoding and resizing stay bounded)
MAX_UPLOAD_MB = 10
SCORE_THRESHOLD = 0.3  # boxes the Space draws
EXAMPLES = 4
QUEUE_SIZE = 32
CONCURRENCY = 1  # one request at a time: each runs every variant on shared CPU threads
EXAMPLE_PNG = "example.png"  # the example image staged into each repo for its snippet


def save_image(image: Any, path: Path) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path, quality=92)


def stage_card_files(loaded, node, art: Path, out: Path) -> None:
    """An example val image and the standalone ``detector.py`` beside the weights, for the usage snippet."""
    from zoo.families.object_detection.family import FAMILY

    image = FAMILY.examples(loaded.model(node.model_id), loaded.root, f"models.{node.model_id}.dataset",
                                       1)[0]
    from PIL import Image

    Image.fromarray(image).save(out / EXAMPLE_PNG)
    shutil.copyfile(HERE / "model.py", out / "detector.py")


def write_space(loaded, store, model_id: str, specs: list[dict], table: dict, left_out: list[str]) -> Path:
    """The Space folder: app.py + detector.py, variants.json, table.json, examples/, requirements.txt, README.md."""
    from huggingface_hub import SpaceCard, SpaceCardData

    from zoo import card
    from zoo.families.object_detection.family import ObjectDetection
    from zoo.store import atomic_dir, write_json

    model = loaded.model(model_id)
    title = f"{model_id} variants"
    description = " ".join((model.description or f"The compressed variants of {model_id}.").split())
    config = {"title": title, "description": description, "task": model.task, "max_side": MAX_SIDE,
              "max_upload_mb": MAX_UPLOAD_MB, "score_threshold": SCORE_THRESHOLD, "queue_size": QUEUE_SIZE,
              "concurrency": CONCURRENCY, "threads": 1,
              "variants": [{k: s[k] for k in ("repo_id", "variant", "kind")} for s in specs]}
    data = SpaceCardData(title=title, sdk="gradio", sdk_version=metadata.version("gradio"), app_file="app.py",
                         models=[s["repo_id"] for s in specs], license=model.license.value,
                         tags=["modelzoo", model.task])
    readme = SpaceCard.from_template(
        data, template_path=str(HERE / "space" / "README.md.j2"), stamp=card.STAMP, model_id=model_id,
        title=title, description=description, family_md=card.family_markdown(loaded, table), left_out=left_out,
        max_side=MAX_SIDE)
    images = ObjectDetection().examples(model, loaded.root, f"models.{model_id}.dataset", EXAMPLES)
    with atomic_dir(store.space(model_id)) as out:
        shutil.copyfile(HERE / "space" / "app.py", out / "app.py")
        shutil.copyfile(HERE / "model.py", out / "detector.py")
        config["examples"] = []
        for i, image in enumerate(images):
            rel = f"examples/{i}.jpg"
            save_image(image, out / rel)
            config["examples"].append({"file": rel})
        write_json(out / "table.json", table)
        write_json(out / "variants.json", config)
        pins = {name: metadata.version(name) for name in ("gradio", "huggingface_hub", "numpy", "pillow",
                                                          "onnxruntime")}
        (out / "requirements.txt").write_text((HERE / "space" / "requirements.txt").read_text().format(**pins))
        (out / "README.md").write_text(str(readme))
    return store.space(model_id)
