"""Ids: the one parser of ``MODEL[:VARIANT]`` selectors and the one place repo ids are derived."""

from __future__ import annotations

import re

from zoo.errors import UsageError
from zoo.registry.schema import ID_PATTERN

_ID = re.compile(ID_PATTERN)


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
