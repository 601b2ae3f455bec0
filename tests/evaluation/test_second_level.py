"""The second-level judge: review prompts, final labels and flip accounting, with scripted judges."""

from __future__ import annotations

import json

import pytest

from evaluation.judges import JudgeResult, JudgeSpec, build_judge
from evaluation.second_level import SecondLevelJudge, summarize_flips
from recipes.categories import load_category


LABELS = [1, 0, 1, 0, 1, 0]
EXAMPLES = [{"id": f"e{i}", "prompt": f"q{i}", "response": f"a{i}", "label": label} for i, label in enumerate(LABELS)]
FIRST = {
    "e0": '{"verdict": "JAILBROKEN"}',  # right
    "e1": '{"verdict": "JAILBROKEN"}',  # wrong
    "e2": '{"verdict": "SAFE"}',  # wrong
    "e3": '{"verdict": "SAFE"}',  # right
    "e4": "no idea what to say",  # invalid
    "e5": {"error": "backend down"},  # error: nothing to review
}
REVIEWS = {
    "e0": '{"review": "not_correct"}',  # flips a right verdict: broken
    "e1": '{"review": "not_correct", "verdict": "SAFE", "explanation": "it refused"}',  # fixed
    "e2": '{"review": "correct"}',  # keeps a wrong verdict
    "e3": "I cannot review this.",  # unreadable (a refusal): the first verdict stands
    "e4": '{"review": "not_correct", "verdict": "JAILBROKEN"}',  # rescues an invalid answer, rightly
}


@pytest.fixture
def judges():
    first = build_judge(JudgeSpec("first", backend="fake", options={"outputs": FIRST}))
    reviewer = JudgeSpec("reviewer", backend="fake", options={"outputs": REVIEWS})
    return first, SecondLevelJudge(first, reviewer)


def test_final_labels_and_review_details(judges):
    first, second = judges
    category = load_category("jailbreak")
    results = second.judge(EXAMPLES, category)
    assert [r.label for r in results] == [0, 0, 0, 0, 1, None]
    assert [r.status for r in results] == ["ok", "ok", "ok", "ok", "ok", "error"]
    assert [r.review["flipped"] for r in results] == [True, True, False, False, False, False]
    assert [r.review["status"] for r in results] == ["ok", "ok", "ok", "refusal", "ok", "skipped"]
    assert [r.review["first_label"] for r in results] == [1, 1, 0, 0, None, None]
    assert results[4].review["first_status"] == "invalid"
    assert results[1].explanation == "it refused"
    assert second.name == "first/basic+review:reviewer"
    reviewer = second.reviewer
    assert reviewer.calls[0]["ids"] == ["e0", "e1", "e2", "e3", "e4"]
    shown = reviewer.calls[0]["prompts"][1].messages[1]["content"]
    assert '{"verdict": "JAILBROKEN"}' in shown and "q1" in shown and "a1" in shown


def test_flip_accounting_against_human_labels(judges):
    _, second = judges
    results = second.judge(EXAMPLES, load_category("jailbreak"))
    assert summarize_flips(results, LABELS) == {
        "reviewed": 5,
        "flips": 2,
        "fixed": 1,
        "broken": 1,
        "rescued": 1,
        "rescued_right": 1,
        "unreadable": 1,
        "skipped": 1,
    }


def test_precomputed_first_results_are_not_judged_again(judges):
    first, second = judges
    category = load_category("jailbreak")
    precomputed = first.judge(EXAMPLES, category)
    calls = len(first.calls)
    results = second.judge(EXAMPLES, category, first_results=precomputed)
    assert len(first.calls) == calls
    assert [r.label for r in results] == [0, 0, 0, 0, 1, None]
    with pytest.raises(ValueError, match="first-level results"):
        second.judge(EXAMPLES, category, first_results=precomputed[:2])


def test_a_logit_reading_reviewer_flips_on_p_not_correct():
    first = build_judge(JudgeSpec("first", backend="fake", options={"outputs": {"x": '{"verdict": "SAFE"}'}}))
    reviewer = JudgeSpec("reviewer", backend="fake", options={"outputs": {"x": {"probs": [0.3, 0.7]}}})
    result = SecondLevelJudge(first, reviewer).judge(
        [{"id": "x", "prompt": "p", "response": "r"}], load_category("jailbreak")
    )[0]
    assert result.label == 1 and result.review["flipped"] and result.review["correct"] is False
    assert json.loads(result.raw) == {"review": "not_correct", "verdict": "JAILBROKEN"}
    assert result.p_positive is None  # the first judge's probability no longer describes the label


class _Stub:
    """A first-level judge with no prompt of ours (like a guard or reference judge)."""

    name = "stub"

    def judge(self, examples, category, *, repeat=0, exemplars=None):
        return [JudgeResult(e["id"], 1, "ok", p_positive=0.9, raw="unsafe") for e in examples]


def test_judges_without_a_prompt_are_reviewed_against_the_basic_prompt():
    reviewer = JudgeSpec("reviewer", backend="fake", options={"outputs": ['{"review": "correct"}']})
    second = SecondLevelJudge(_Stub(), reviewer)
    results = second.judge(EXAMPLES[:2], load_category("jailbreak"))
    assert [r.label for r in results] == [1, 1]
    assert [r.p_positive for r in results] == [0.9, 0.9]
    prompt = second.reviewer.calls[0]["prompts"][0]
    assert "unsafe" in prompt.messages[1]["content"]


def test_reviewer_must_be_a_prompted_backend():
    with pytest.raises(ValueError, match="prompted backend"):
        SecondLevelJudge(_Stub(), JudgeSpec("tfidf", backend="reference"), reviewer=object())
