"""Ids: the one parser of ``MODEL[:VARIANT]`` selectors and the one place repo ids are derived."""

from __future__ import annotations

import re

from zoo.errors import UsageError
from zoo.registry.schema import ID_PATTERN

_ID = re.compile(ID_PATTERN)
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
# Staged folder names a variant id would collide with: repos/<model>-family holds the family card.
RESERVED_VARIANTS = {"family"}


def repo_id(org: str, model: str, variant: str) -> str:
    """The Hub repo id of a variant: ``<org>/<model>-<variant>``."""
    return f"{org}/{model}-{variant}"


def adapter_repo_id(org: str, model: str, variant: str) -> str:
    """The Hub repo id of a variant's LoRA adapter, published beside its merged checkpoint."""
    return f"{repo_id(org, model, variant)}-adapter"


def family_repo_id(org: str, model: str) -> str:
    """The Hub repo id of a family's card (every variant with its metric and gate): ``<org>/<model>``."""
    return f"{org}/{model}"


def space_id(org: str, model: str) -> str:
    """The Hub repo id of a family's demo Space: ``<org>/<model>-demo``."""
    return f"{org}/{model}-demo"


def parse_selector(text: str | None) -> tuple[str | None, str | None]:
    """Parse ``MODEL`` or ``MODEL:VARIANT`` (or None for everything).

    Raises:
        UsageError: a part is not a valid id.
    """
    if not text:
        return None, None
    model, _, variant = text.partition(":")
    for part, what in ((model, "model"), (variant, "variant")):
        if part and not _ID.match(part):
            raise UsageError(f"'{text}': {what} id '{part}' is not valid: use MODEL or MODEL:VARIANT with "
                             "lowercase letters, digits and '-'")
    if not model:
        raise UsageError(f"'{text}': name a model, as MODEL or MODEL:VARIANT")
    return model, variant or None


def tag_problem(tag: str) -> str | None:
    """Why ``tag`` cannot name a git tag on the Hub (one component of a git ref), or None if it can."""
    if not _TAG.match(tag) or ".." in tag or tag.endswith((".", ".lock")):
        return (f"'{tag}' cannot be a tag: use up to 128 letters, digits, '.', '_' and '-', starting with a letter "
                "or digit, without '..' or '/', not ending in '.' or '.lock' (e.g. 2026.11.1)")
    return None


def repo_id_problem(rid: str) -> str | None:
    """Why the Hub would refuse ``rid`` as a repo id (huggingface_hub's own check), or None."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(rid)
    except HFValidationError as e:
        return str(e).rstrip(".")
    return None
