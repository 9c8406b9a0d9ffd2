"""Fitting settings the recipe does not expose (imported by :mod:`.fitting` only, so the techniques reach it two
imports away)."""

WEIGHT_DECAY = 1e-4
