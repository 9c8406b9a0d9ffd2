"""Read YAML keeping the line of every node, so that errors can point at ``file:line``.

Duplicate keys are errors (PyYAML silently keeps the last one). Dumping always goes through ``yaml.safe_dump``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from zoo.errors import Problem, ZooError

MAX_BYTES = 1_000_000

Loc = tuple[str | int, ...]


@dataclass
class Document:
    """A parsed YAML file: its data and the 1-based line of every key path in it."""

    path: str
    data: Any
    lines: dict[Loc, int] = field(default_factory=dict)

    def line_of(self, loc: Loc) -> int | None:
        """The line of ``loc``, or of its nearest ancestor that exists in the file."""
        loc = tuple(loc)
        while loc:
            if loc in self.lines:
                return self.lines[loc]
            loc = loc[:-1]
        return self.lines.get((), 1)

    def problem(self, loc: Loc, message: str, warning: bool = False) -> Problem:
        return Problem(self.path, self.line_of(loc), dotted(loc), message, warning)


def dotted(loc: Loc) -> str:
    return ".".join(str(p) for p in loc)


MAX_NODES = 200_000


class _TooBig(Exception):
    pass


def _construct(node: yaml.Node, loc: Loc, lines: dict[Loc, int], path: str) -> Any:
    if len(lines) > MAX_NODES:
        raise _TooBig
    lines.setdefault(loc, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise ZooError(problems=[Problem(path, key_node.start_mark.line + 1, dotted(loc),
                                                 "a key must be a plain name, not a list or mapping")])
            key = _scalar(key_node)
            if key in out:
                raise ZooError(problems=[Problem(
                    path, key_node.start_mark.line + 1, dotted((*loc, key)),
                    f"duplicate key '{key}' (first on line {lines[(*loc, key)]}); ids must be unique: "
                    "rename or merge one of them")])
            lines[(*loc, key)] = key_node.start_mark.line + 1
            out[key] = _construct(value_node, (*loc, key), lines, path)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_construct(item, (*loc, i), lines, path) for i, item in enumerate(node.value)]
    return _scalar(node)


_CONSTRUCTOR = yaml.constructor.SafeConstructor()
# libyaml's parser when PyYAML has it (about 10x faster on a registry of thousands of variants)
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _scalar(node: yaml.Node) -> Any:
    return _CONSTRUCTOR.construct_object(node, deep=True)


def _compose(text: str) -> yaml.Node | None:
    try:
        return yaml.compose(text, Loader=_LOADER)
    except yaml.YAMLError:
        return yaml.compose(text, Loader=yaml.SafeLoader)  # its messages are the ones users see; raises again


def load(path: str | Path, display: str | None = None, text: str | None = None) -> Document:
    """Parse the YAML file at ``path`` (or ``text``) into a :class:`Document`.

    Raises:
        ZooError: the file is missing, too large, not UTF-8, not YAML, or has a duplicate key; one line each.
    """
    shown = display or str(path)
    if text is None:
        p = Path(path)
        if not p.is_file():
            raise ZooError(problems=[Problem(shown, None, "", "file not found: create it or pass the right path")])
        raw = p.read_bytes()
        if len(raw) > MAX_BYTES:
            raise ZooError(problems=[Problem(shown, None, "", f"file is {len(raw)} bytes, more than the "
                                                               f"{MAX_BYTES} a registry or recipe may have")])
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            line = raw[: e.start].count(b"\n") + 1
            raise ZooError(problems=[Problem(shown, line, "", "not valid UTF-8: save the file as UTF-8")]) from None
    if "\x00" in text:
        raise ZooError(problems=[Problem(shown, text[: text.index("\x00")].count("\n") + 1, "",
                                         "file contains a NUL byte: save it as UTF-8 text")])
    try:
        node = _compose(text)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark else None
        what = (e.problem or str(e)).strip()
        raise ZooError(problems=[Problem(shown, line, "", f"YAML syntax error: {what}")]) from None
    except yaml.YAMLError as e:
        raise ZooError(problems=[Problem(shown, None, "", f"YAML error: {str(e).splitlines()[0]}")]) from None
    if node is None:
        raise ZooError(problems=[Problem(shown, 1, "", "file is empty: it needs at least the required keys")])
    lines: dict[Loc, int] = {}
    try:
        data = _construct(node, (), lines, shown)
    except yaml.YAMLError as e:
        raise ZooError(problems=[Problem(shown, None, "", f"YAML error: {str(e).splitlines()[0]}")]) from None
    except (RecursionError, _TooBig):
        raise ZooError(problems=[Problem(shown, None, "", f"YAML expands to more than {MAX_NODES} values "
                                         "(deep nesting or anchors/aliases): simplify the file")]) from None
    return Document(shown, data, lines)


def dump(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
