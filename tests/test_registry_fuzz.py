"""Property tests: no mutation of the shipped registry makes `zoo validate` raise anything but a one-line ZooError."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zoo import registry
from zoo.errors import ZooError

ROOT = Path(__file__).resolve().parent.parent
SHIPPED_TEXT = (ROOT / "registry.yaml").read_text()
SHIPPED = yaml.safe_load(SHIPPED_TEXT)
LINE = re.compile(r"^registry\.yaml(:\d+)?: (\S+: )?\S.*$")

values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**12, 10**12) | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)


def _paths(obj, prefix=()):
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, (*prefix, i))


PATHS = [p for p in _paths(SHIPPED) if p]


def _mutate(data, path, op, value, new_key):
    import copy

    data = copy.deepcopy(data)
    parent = data
    for part in path[:-1]:
        parent = parent[part]
    last = path[-1]
    if op == "delete" and isinstance(parent, dict):
        del parent[last]
    elif op == "rename" and isinstance(parent, dict):
        parent[new_key] = parent.pop(last)
    elif op == "add" and isinstance(parent, dict):
        parent[new_key] = value
    else:
        parent[last] = value
    return data


def _check(text: str):
    try:
        registry.load(ROOT / "registry.yaml", text=text)
    except ZooError as e:
        lines = str(e).splitlines()
        assert lines, "empty error"
        for line in lines:
            assert LINE.match(line), line
            assert "Traceback" not in line


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(path=st.sampled_from(PATHS), op=st.sampled_from(["delete", "rename", "add", "replace"]), value=values,
       new_key=st.text(min_size=1, max_size=12))
def test_structural_mutations_never_crash(path, op, value, new_key):
    _check(yaml.safe_dump(_mutate(SHIPPED, path, op, value, new_key)))


@settings(max_examples=150, deadline=None)
@given(pos=st.integers(0, len(SHIPPED_TEXT) - 1), junk=st.text(min_size=1, max_size=5), cut=st.booleans())
def test_text_mutations_never_crash(pos, junk, cut):
    text = SHIPPED_TEXT[:pos] + ("" if cut else junk) + SHIPPED_TEXT[pos + (len(junk) if cut else 0):]
    _check(text)
