"""Generation-quality metrics, their intervals and the repetition check (text_generation/quality.py, lm_eval_task)."""

from __future__ import annotations

import math

import pytest

from zoo.families.text_generation import harness, quality
from zoo.families.text_generation.lm_eval_task import utils


def test_repetition_metrics_see_the_loop_the_issue_saw():
    looping = "noble, most noble, most noble, most noble, most noble, most noble"
    prose = "Who's there? Nay, answer me: stand, and unfold yourself. Long live the king!"
    assert utils.repeated_ngram_rate(looping) > 0.7 and utils.repeated_ngram_rate(prose) == 0.0
    assert utils.distinct_n(looping) < 0.3 and utils.distinct_n(prose) == 1.0
    assert utils.repeated_ngram_rate("one two") == 0.0 and utils.distinct_n("") == 0.0  # too short: no n-gram


def test_rouge_l_is_symmetric_in_agreement_and_zero_for_nothing():
    a, b = "the king is dead and the prince speaks", "the prince speaks to the ghost"
    assert utils.rouge_l(a, a) == pytest.approx(1.0)
    assert 0 < utils.rouge_l(a, b) < 1
    assert utils.rouge_l("", b) == 0.0


def test_build_rows_gives_one_cloze_item_per_line_and_openings_with_the_rest():
    texts = ["Who's there?\nNay, answer me: stand, and unfold yourself.\nLong live the king!\nBernardo? He.\n"
             "You come most carefully upon your hour. 'Tis now struck twelve; get thee to bed, Francisco."]
    rows = harness.build_rows(texts, openings=5)
    assert [r["target"] for r in rows.cloze] == ["stand", "the", "now"]  # middle word; 2-word lines skipped
    for r in rows.cloze:
        assert texts[0].startswith(r["context"] + " " + r["target"])
    (opening,) = rows.openings
    assert opening["prompt"] + opening["reference"] == texts[0]
    assert len(utils.words(opening["prompt"])) == harness.PROMPT_WORDS


def test_intervals_hold_the_value_and_pair_rows():
    iv = quality.mean_interval([0, 1, 1, 0, 1, 1, 1, 0])
    assert iv["ci"][0] < iv["value"] == 0.625 < iv["ci"][1] and iv["n"] == 8
    assert quality.mean_interval([0.5] * 4)["ci"] == [0.5, 0.5]
    ll, tok = [-20.0, -30.0, -25.0, -40.0], [10, 12, 9, 15]
    ppl = quality.perplexity_interval(ll, tok)
    assert ppl["value"] == pytest.approx(math.exp(115 / 46)) and ppl["ci"][0] <= ppl["value"] <= ppl["ci"][1]
    same = quality.perplexity_ratio_interval(ll, ll, tok)
    assert same["value"] == pytest.approx(1.0) and same["ci"] == pytest.approx([1.0, 1.0])
    worse = quality.perplexity_ratio_interval(ll, [x - 5 for x in ll], tok)
    assert worse["ci"][1] < 1  # every passage is less likely under the variant: the ratio is below 1 for sure


@pytest.mark.parametrize("values,verdict", [
    ([0.9, 0.8, 0.95, 0.85, 0.9, 0.9], "fail"),  # loops on every opening
    ([0.0, 0.05, 0.0, 0.02, 0.0, 0.0], "pass"),  # as repetitive as the reference
    ([0.0, 0.6, 0.0, 0.0, 0.0, 0.0], "not enough evidence"),  # one loop in six: the interval straddles the margin
])
def test_repetition_margin_check(values, verdict):
    reference = [0.0, 0.02, 0.0, 0.0, 0.01, 0.0]
    check = quality.margin_check("repetition", quality.paired_difference(values, reference), 0.10, "rate")
    assert check["verdict"] == verdict and check["passed"] == (verdict == "pass")


def test_task_folder_is_valid_lm_eval_yaml(tmp_path):
    from lm_eval.tasks import TaskManager

    rows = harness.build_rows(["To be, or not to be, that is the question:\nWhether 'tis nobler in the mind to "
                               "suffer\nThe slings and arrows of outrageous fortune,"], openings=1)
    info = harness.write_task(tmp_path / "task", "hamlet_test", rows)
    assert info["tasks"] == ["hamlet_test_passages", "hamlet_test_cloze", "hamlet_test_continue"]
    assert (tmp_path / "task" / "utils.py").read_text() == (harness.TASK_FILES / "utils.py").read_text()
    manager = TaskManager(include_path=str(tmp_path / "task"))
    assert {"hamlet_test", *info["tasks"]} <= set(manager.all_tasks)
    docs = list(manager.load(["hamlet_test_cloze"])["tasks"]["hamlet_test_cloze"].test_docs())
    assert [d["target"] for d in docs] == [r["target"] for r in rows.cloze]
