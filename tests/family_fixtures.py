"""Pytest fixtures for the tiny vision and causal-LM projects (registered from conftest.py via pytest_plugins).

``tiny_vision_zoo`` / ``tiny_lm_zoo``: a fresh copy of the project, returns its registry.yaml (store in
<project>/.zoo). ``built_tiny_vision_zoo`` / ``built_tiny_lm_zoo``: one session-wide copy with every variant built
(shared: treat as read-only, copy it before changing anything). ``evaluated_tiny_vision_zoo`` /
``evaluated_tiny_lm_zoo``: another session-wide copy of the built project with every variant evaluated by
``zoo eval`` (read-only too).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from tiny_families import make_tiny_lm_zoo, make_tiny_vision_zoo


def _copy(src: Path, dest: Path, with_store: bool) -> Path:
    shutil.copytree(src, dest, ignore=None if with_store else shutil.ignore_patterns(".zoo"))
    return dest / "registry.yaml"


def _build_all(registry_path: Path) -> Path:
    from zoo import build, plan, registry
    from zoo.store import Store

    loaded = registry.load(registry_path)
    build.build(loaded, Store.for_registry(loaded.path), plan.make(loaded), log=lambda *_: None)
    return registry_path


def _evaluate_all(registry_path: Path) -> Path:
    """``zoo eval --all`` on the project, through the CLI (performance runs in child processes, as for users)."""
    from typer.testing import CliRunner

    from zoo.cli import app

    result = CliRunner().invoke(app, ["eval", "--all", "--registry", str(registry_path)])
    if result.exit_code != 0:
        raise RuntimeError(f"zoo eval failed ({result.exit_code}): {result.output[-2000:]}")
    return registry_path


@pytest.fixture(scope="session")
def _tiny_vision_template(tmp_path_factory) -> Path:
    return make_tiny_vision_zoo(tmp_path_factory.mktemp("tiny-vision-template")).parent


@pytest.fixture(scope="session")
def _tiny_lm_template(tmp_path_factory) -> Path:
    return make_tiny_lm_zoo(tmp_path_factory.mktemp("tiny-lm-template")).parent


@pytest.fixture
def tiny_vision_zoo(_tiny_vision_template, tmp_path) -> Path:
    """A fresh copy of the tiny image-classification project; returns its registry.yaml path."""
    return _copy(_tiny_vision_template, tmp_path / "vision-project", with_store=False)


@pytest.fixture
def tiny_lm_zoo(_tiny_lm_template, tmp_path) -> Path:
    """A fresh copy of the tiny text-generation project; returns its registry.yaml path."""
    return _copy(_tiny_lm_template, tmp_path / "lm-project", with_store=False)


@pytest.fixture(scope="session")
def built_tiny_vision_zoo(tmp_path_factory, _tiny_vision_template) -> Path:
    """The tiny image-classification project with every variant built once per session (read-only for tests)."""
    return _build_all(_copy(_tiny_vision_template, tmp_path_factory.mktemp("built-vision") / "project", False))


@pytest.fixture(scope="session")
def built_tiny_lm_zoo(tmp_path_factory, _tiny_lm_template) -> Path:
    """The tiny text-generation project with every variant built once per session (read-only for tests)."""
    return _build_all(_copy(_tiny_lm_template, tmp_path_factory.mktemp("built-lm") / "project", False))


@pytest.fixture(scope="session")
def evaluated_tiny_vision_zoo(tmp_path_factory, built_tiny_vision_zoo) -> Path:
    """A copy of the built tiny vision project with every variant evaluated (read-only for tests)."""
    src = built_tiny_vision_zoo.parent
    return _evaluate_all(_copy(src, tmp_path_factory.mktemp("evaluated-vision") / "project", True))


@pytest.fixture(scope="session")
def evaluated_tiny_lm_zoo(tmp_path_factory, built_tiny_lm_zoo) -> Path:
    """A copy of the built tiny LM project with every variant evaluated (read-only for tests)."""
    src = built_tiny_lm_zoo.parent
    return _evaluate_all(_copy(src, tmp_path_factory.mktemp("evaluated-lm") / "project", True))
