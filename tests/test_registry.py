"""The registry schema and its rules: the shipped registry, every malformed fixture, selectors and the JSON Schema."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from zoo import ids, registry
from zoo.cli import app
from zoo.errors import UsageError, ZooError

ROOT = Path(__file__).resolve().parent.parent
BAD = Path(__file__).parent / "fixtures" / "bad"
EXPECTED = dict(line.split("\t", 1) for line in (BAD / "expected.tsv").read_text().splitlines())
SHIPPED = registry.load(ROOT / "registry.yaml")
runner = CliRunner()


def test_at_least_40_malformed_fixtures():
    assert len(EXPECTED) >= 40
    assert set(EXPECTED) == {p.name for p in BAD.glob("*.yaml")}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_malformed_registry_gives_its_one_line(name, monkeypatch):
    monkeypatch.chdir(BAD)
    result = runner.invoke(app, ["validate", "--registry", name])
    assert result.exit_code == 1, result.output
    assert result.stderr.strip() == EXPECTED[name]
    assert "Traceback" not in result.output


@pytest.mark.parametrize("mid", sorted(SHIPPED.registry.models))
def test_every_shipped_model_validates(mid):
    model = SHIPPED.model(mid)
    assert model.license
    for vid, v in model.variants.items():
        recipe = SHIPPED.recipe_of(v)
        assert v.kind in recipe.technique.kinds, f"{mid}:{vid}"
        assert model.task in recipe.technique.tasks, f"{mid}:{vid}"


def test_shipped_registry_cli_ok():
    result = runner.invoke(app, ["validate", "--registry", str(ROOT / "registry.yaml")])
    assert result.exit_code == 0, result.output
    assert ": ok (" in result.stdout


def test_missing_registry_file_is_exit_1(tmp_path):
    result = runner.invoke(app, ["validate", "--registry", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 1
    assert "file not found" in result.stderr


def test_usage_error_is_exit_2():
    proc = subprocess.run([sys.executable, "-m", "zoo", "validate", "--no-such-flag"], capture_output=True,
                          text=True, cwd=ROOT)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr


def test_unknown_selector_is_usage_error():
    with pytest.raises(UsageError, match="did you mean 'minilm-sentiment'"):
        SHIPPED.select("minilm-sentimen", None)
    with pytest.raises(UsageError, match="unknown variant 'minilm-sentiment:int9'"):
        SHIPPED.select("minilm-sentiment", "int9")


def test_hub_source_without_revision_is_a_warning(tmp_path):
    shutil.copytree(BAD / "recipes", tmp_path / "recipes")
    text = (BAD / "unknown-parent.yaml").read_text().replace("from: fp23", "from: fp32")
    text = text.replace('base: {source: "file:model"}', 'base: {source: "hub:acme/bert-tiny"}')
    (tmp_path / "registry.yaml").write_text(text)
    loaded = registry.load(tmp_path / "registry.yaml")
    assert len(loaded.warnings) == 1
    assert "no pinned revision" in str(loaded.warnings[0])
    (tmp_path / "registry.yaml").write_text(text.replace("hub:acme/bert-tiny", "hub:acme/bert-tiny@0123abc"))
    assert registry.load(tmp_path / "registry.yaml").warnings == []


def test_warning_does_not_fail_validate(tmp_path, monkeypatch):
    shutil.copytree(BAD / "recipes", tmp_path / "recipes")
    text = (BAD / "unknown-parent.yaml").read_text().replace("from: fp23", "from: fp32")
    (tmp_path / "registry.yaml").write_text(text.replace('"file:model"', '"hub:acme/bert-tiny"'))
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["validate"])
    assert result.exit_code == 0
    assert "warning: 'hub:acme/bert-tiny' has no pinned revision" in result.stderr


@pytest.mark.parametrize("text, model, variant", [
    ("minilm", "minilm", None), ("minilm:int8", "minilm", "int8"), (None, None, None)])
def test_selector_parsing(text, model, variant):
    assert ids.parse_selector(text) == (model, variant)


@pytest.mark.parametrize("text", ["../x", "a:B", ":int8", "a/b"])
def test_bad_selector(text):
    with pytest.raises(UsageError):
        ids.parse_selector(text)


def test_repo_ids_are_derived_in_one_place():
    assert ids.repo_id("org", "m", "int8") == "org/m-int8"
    assert ids.adapter_repo_id("org", "m", "qlora-4bit") == "org/m-qlora-4bit-adapter"
    assert ids.space_id("org", "m") == "org/m-demo"


def test_committed_json_schema_is_current():
    committed = (ROOT / registry.SCHEMA_FILE).read_text()
    assert committed == registry.json_schema(), "run `zoo schema --write registry.schema.json`"
    schema = json.loads(committed)
    assert "models" in schema["properties"]
    assert (ROOT / "registry.yaml").read_text().startswith("# yaml-language-server: $schema=./registry.schema.json")


def test_schema_command_prints_schema():
    result = runner.invoke(app, ["schema"])
    assert result.exit_code == 0
    assert json.loads(result.stdout)["title"] == "modelzoo registry.yaml"


def test_yaml_round_trip_of_recipes():
    from zoo import yamlio

    for recipe in SHIPPED.recipes.values():
        data = yamlio.load(recipe.path).data
        assert yamlio.load("x", text=yamlio.dump(data)).data == data
        params = recipe.technique.params.model_validate({k: v for k, v in data.items()
                                                         if k not in ("technique", "description")})
        assert params == recipe.params


def test_zoo_error_is_one_line_per_problem():
    with pytest.raises(ZooError) as e:
        registry.load(BAD / "unknown-parent.yaml")
    assert len(str(e.value).splitlines()) == 1


def test_kfold_on_text_generation_is_rejected(tmp_path):
    shutil.copytree(ROOT / "recipes", tmp_path / "recipes")
    text = (ROOT / "registry.yaml").read_text()
    assert "metrics: [perplexity, exact_match]" in text
    text = text.replace("metrics: [perplexity, exact_match]", "metrics: [perplexity, exact_match]\n      kfold: 5", 1)
    (tmp_path / "registry.yaml").write_text(text)
    with pytest.raises(ZooError, match="evaluation.kfold: k-fold applies to per-row metrics, not to text-generation"):
        registry.load(tmp_path / "registry.yaml")
