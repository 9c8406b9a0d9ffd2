"""Families as plugins: a family that lives in one folder outside zoo/ (tests/families/tiny_tabular) and is named by
one registry line goes through build → evaluate → card → Space → push → pull with no edit anywhere else."""

from __future__ import annotations

import json
import py_compile
import shutil
from pathlib import Path

import pytest
from huggingface_hub import ModelCard
from tiny import TINY_FAMILY, TINY_FAMILY_RECIPES, tiny_family_registry
from typer.testing import CliRunner

from zoo import registry
from zoo.cli import app
from zoo.errors import ZooError
from zoo.families import FAMILIES, load_plugin
from zoo.store import Store

runner = CliRunner()
MODEL = "iris-mlp"


def _project(root: Path, folder: str = "tiny_tabular") -> Path:
    shutil.copytree(TINY_FAMILY, root / folder, ignore=shutil.ignore_patterns("__pycache__"))
    (root / "recipes").mkdir()
    for name, text in TINY_FAMILY_RECIPES.items():
        (root / "recipes" / f"{name}.yaml").write_text(text)
    path = root / "registry.yaml"
    path.write_text(tiny_family_registry(folder))
    return path


@pytest.fixture
def project(tmp_path, monkeypatch, plugin_families) -> Path:
    monkeypatch.chdir(tmp_path)
    return _project(tmp_path)


def test_a_family_folder_goes_through_every_stage_and_back_from_the_hub(project, tmp_path):
    result = runner.invoke(app, ["run", "--registry", str(project)])
    assert result.exit_code == 0, result.output
    loaded = registry.load(project)
    store = Store.for_registry(loaded.path)

    # card: the family's pipeline tag, its metrics with intervals, and its own usage snippet
    card = ModelCard.load(store.repo(MODEL, "w16a16") / "README.md")
    assert card.data.pipeline_tag == "tabular-classification"
    assert "load_file(" in card.text and "torch.nn.Sequential" in card.text
    results = json.loads((store.repo(MODEL, "w16a16") / "results.json").read_text())
    assert results["gate"]["passed"] and results["intervals"]["accuracy"]["low"] <= results["metrics"]["accuracy"]

    # Space: the family's app and the module it imports, configured with the variants that passed
    space = store.space(MODEL)
    py_compile.compile(str(space / "app.py"), doraise=True)
    assert (space / "tabular_model.py").is_file()
    config = json.loads((space / "variants.json").read_text())
    assert [v["variant"] for v in config["variants"]] == ["fp32", "w16a16"] and len(config["examples"][0]) == 4

    # pull: the family's loader lines, which run on the pulled folder
    dest = tmp_path / "pulled"
    result = runner.invoke(app, ["pull", MODEL, "--variant", "w16a16", "--registry", str(project), "--dest",
                                 str(dest)])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines()[1:] if line.strip()]
    scope: dict = {}
    exec("\n".join(lines), scope)  # noqa: S102 - the lines `zoo pull` tells a user to run
    assert scope["config"]["label_names"] == ["setosa", "versicolor", "virginica"]
    assert str(scope["state"]["0.weight"].dtype) == "torch.float16"


def test_only_the_family_folder_and_one_registry_line_are_needed():
    registry_text = tiny_family_registry("tiny_tabular")
    assert registry_text.count("tiny_tabular") == 3  # the families: line, and the base and data files in the folder
    zoo_root = Path(__file__).resolve().parent.parent / "zoo"
    assert not any("tabular" in p.read_text() for p in zoo_root.rglob("*.py")), "the zoo package names the family"


def test_a_registry_line_that_names_no_family_folder_is_one_clear_error(tmp_path, plugin_families):
    path = _project(tmp_path)
    path.write_text(path.read_text().replace("families: [tiny_tabular]", "families: [tiny_tabulr]"))
    with pytest.raises(ZooError) as e:
        registry.load(path)
    assert "registry.yaml:1: families.0: " in str(e.value) and "has no family.py" in str(e.value)
    assert "\n" not in str(e.value).strip()


def test_two_families_for_one_task_collide(tmp_path, plugin_families):
    folder = tmp_path / "imposter"
    shutil.copytree(TINY_FAMILY, folder, ignore=shutil.ignore_patterns("__pycache__"))
    family_py = folder / "family.py"
    family_py.write_text(family_py.read_text().replace('task = "tabular-classification"',
                                                       'task = "text-classification"'))
    with pytest.raises(ZooError, match="task 'text-classification' is served twice"):
        load_plugin(folder, "families[0]")
    assert FAMILIES.get("text-classification").folder.name == "text_classification"
