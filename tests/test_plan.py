"""The plan: build order, content hashes that move exactly when an input moves, and `zoo plan --since`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from zoo import plan, registry
from zoo.cli import app

runner = CliRunner()


def _hashes(reg_path):
    return {n.variant_id: n.hash for n in plan.make(registry.load(reg_path))}


def test_parents_come_before_children(tiny_zoo):
    nodes = plan.make(registry.load(tiny_zoo))
    order = [n.variant_id for n in nodes]
    for n in nodes:
        if n.parent != "base":
            assert order.index(n.parent) < order.index(n.variant_id)


def test_hash_is_stable(tiny_zoo):
    assert _hashes(tiny_zoo) == _hashes(tiny_zoo)


def test_recipe_change_moves_variant_and_descendants_only(tiny_zoo):
    before = _hashes(tiny_zoo)
    recipe = tiny_zoo.parent / "recipes" / "finetune.yaml"
    recipe.write_text(recipe.read_text().replace("epochs: 6", "epochs: 7"))
    after = _hashes(tiny_zoo)
    changed = {v for v in before if before[v] != after[v]}
    assert changed == {"fp32", "w16a16", "int8", "distilled"}  # qlora-4bit comes from base


def test_recipe_description_does_not_move_hash(tiny_zoo):
    before = _hashes(tiny_zoo)
    recipe = tiny_zoo.parent / "recipes" / "int8.yaml"
    recipe.write_text("description: only words\n" + recipe.read_text())
    assert _hashes(tiny_zoo) == before


def test_dataset_change_moves_every_variant(tiny_zoo):
    before = _hashes(tiny_zoo)
    tiny_zoo.write_text(tiny_zoo.read_text().replace("seed: 0}", "seed: 1}"))
    after = _hashes(tiny_zoo)
    assert all(before[v] != after[v] for v in before)


def test_library_version_moves_hash(tiny_zoo, monkeypatch):
    before = _hashes(tiny_zoo)
    monkeypatch.setattr(plan, "library_versions", lambda: {"torch": "0.0-other"})
    assert all(before[v] != h for v, h in _hashes(tiny_zoo).items())


def test_select_pulls_in_parents(tiny_zoo):
    nodes = plan.make(registry.load(tiny_zoo))
    assert [n.variant_id for n in plan.select(nodes, [("tiny-sentiment", "int8")])] == ["fp32", "int8"]
    assert [n.variant_id for n in plan.select(nodes, [("tiny-sentiment", "int8")], with_parents=False)] == ["int8"]


def _git(cwd, *args):
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                   env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
                        "GIT_COMMITTER_EMAIL": "t@t", "HOME": str(cwd), "PATH": "/usr/bin:/bin"})


def test_plan_since_reports_what_a_registry_pr_rebuilds(tiny_zoo, monkeypatch):
    root = tiny_zoo.parent
    _git(root, "init", "-q", "-b", "main")
    _git(root, "add", "registry.yaml", "recipes")
    _git(root, "commit", "-qm", "base")
    text = tiny_zoo.read_text().replace(
        "      distilled:", "      int8-dynamic: {kind: int8, from: fp32, recipe: int8dyn, target: x86-avx512}\n"
        "      distilled:")
    tiny_zoo.write_text(text)
    (root / "recipes" / "int8dyn.yaml").write_text("technique: onnx-int8\nmode: dynamic\n")
    q = root / "recipes" / "qlora.yaml"
    q.write_text(q.read_text().replace("r: 8", "r: 12"))
    monkeypatch.chdir(root)
    result = runner.invoke(app, ["plan", "--since", "main", "--json"])
    assert result.exit_code == 0, result.output
    changes = json.loads(result.stdout)["changes"]
    assert changes["added"] == ["tiny-sentiment:int8-dynamic"]
    assert changes["changed"] == ["tiny-sentiment:qlora-4bit"]
    assert changes["removed"] == []
    text_out = runner.invoke(app, ["plan", "--since", "main"]).stdout
    assert "since main: 1 added, 1 changed, 0 removed, 4 unchanged" in text_out
    assert "[added]" in text_out and "[changed]" in text_out


def test_plan_since_unknown_ref_is_usage_error(tiny_zoo, monkeypatch):
    root = tiny_zoo.parent
    _git(root, "init", "-q", "-b", "main")
    monkeypatch.chdir(root)
    result = runner.invoke(app, ["plan", "--since", "origin/nope"])
    assert result.exit_code == 2
    assert "is not a git revision here" in result.stderr


def test_plan_shows_trust_remote_code(tiny_zoo, monkeypatch):
    tiny_zoo.write_text(tiny_zoo.read_text().replace("    license: apache-2.0\n",
                                                     "    license: apache-2.0\n    trust_remote_code: true\n"))
    monkeypatch.chdir(tiny_zoo.parent)
    result = runner.invoke(app, ["plan"])
    assert "[trust_remote_code: on]" in result.stdout


def test_code_hash_covers_every_module_a_technique_imports_even_indirectly():
    from zoo.plan import PACKAGE_ROOT, import_closure, technique_code_hash
    from zoo.techniques import TECHNIQUES

    def closure(technique: str) -> set[str]:
        module = sys.modules[type(TECHNIQUES.get(technique)).__module__]
        return {f.relative_to(PACKAGE_ROOT).as_posix() for f in import_closure(Path(module.__file__))}

    # the two imports the old regex missed: vision techniques -> int8 presets, pruning -> vision techniques
    assert "zoo/techniques/int8.py" in closure("vision-ptq")
    assert "zoo/families/image_classification/techniques.py" in closure("prune")
    # the registries and the plan choose what runs; they are not part of what a technique computes
    assert not closure("onnx-int8") & {"zoo/techniques/__init__.py", "zoo/families/__init__.py", "zoo/plan.py"}
    by_module = {type(TECHNIQUES.get(n)).__module__: technique_code_hash(TECHNIQUES.get(n)) for n in TECHNIQUES.names()}
    assert len(set(by_module.values())) == len(by_module)


def test_editing_a_module_imported_two_steps_away_changes_the_plan(tmp_path, plugin_families):
    """A plugin family's technique imports a helper that imports the presets; editing the presets moves the hash
    of every variant that technique builds (`zoo plan --since` would say "changed")."""
    import shutil

    from tiny import TINY_FAMILY

    folder = tmp_path / "tiny_tabular"
    shutil.copytree(TINY_FAMILY, folder)
    reg = _plugin_registry(tmp_path, "tiny_tabular")
    before = {n.key: n.hash for n in plan.make(registry.load(reg))}
    presets = folder / "presets.py"
    presets.write_text(presets.read_text() + "\n# a comment is still a change of the module's bytes\n")
    after = {n.key: n.hash for n in plan.make(registry.load(reg))}
    changed = plan.diff(_as_nodes(before), plan.make(registry.load(reg)))["changed"]
    assert before.keys() == after.keys() and all(before[k] != after[k] for k in before) and changed


def _plugin_registry(root: Path, folder: str) -> Path:
    from tiny import TINY_FAMILY_RECIPES, tiny_family_registry

    path = root / "registry.yaml"
    path.write_text(tiny_family_registry(folder))
    (root / "recipes").mkdir(exist_ok=True)
    for name, text in TINY_FAMILY_RECIPES.items():
        (root / "recipes" / f"{name}.yaml").write_text(text)
    return path


def _as_nodes(hashes: dict[str, str]) -> list:
    return [type("N", (), {"key": k, "hash": h})() for k, h in hashes.items()]
