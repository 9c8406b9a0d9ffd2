"""The line `zoo push` prints for a variant it skips names what failed: the ratio and every failed check."""

from __future__ import annotations

from zoo.hub.publish import _gate_text


def test_a_variant_that_fails_on_a_check_says_so_not_only_its_passing_ratio():
    gate = {"metric": "perplexity", "ratio": 0.9518, "of": "fp32", "min_ratio": 0.9, "verdict": "pass", "passed": False,
            "checks": [{"check": "repetition", "verdict": "not enough evidence", "passed": False},
                       {"check": "agreement", "verdict": "informational", "passed": True}]}
    assert _gate_text({"gate": gate}) == ("gate failed (perplexity 0.9518 of fp32, needs 0.9; "
                                          "failed checks: repetition (not enough evidence))")


def test_a_ratio_failure_carries_its_verdict():
    gate = {"metric": "top1", "ratio": 1.0, "of": "fp32", "min_ratio": 0.99, "verdict": "not enough evidence"}
    assert _gate_text({"gate": gate}) == "gate failed (top1 1.0000 of fp32, needs 0.99: not enough evidence)"
