"""The robustness suite: perturbed copies, F1 under attack, flip rates and their direction."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from evaluation.judges import JudgeSpec, build_judge
from evaluation.metrics import compute_binary_metrics
from evaluation.robustness import (
    CLEAN,
    RobustnessConfig,
    compute_robustness_rows,
    judge_suite,
    parse_robustness,
    perturb_examples,
    robustness_table,
    select_clean,
)
from recipes.attacks import SUITE_ATTACKS, attacked_id
from recipes.categories import load_category
from recipes.schema import DataError


ROOT = Path(__file__).resolve().parents[2]


def _examples(n=10):
    return [
        {
            "id": f"hc-{i:02d}",
            "category": "harmful_content",
            "prompt": f"request {i}",
            "response": f"answer {i}: " + ("step one, step two." if i % 2 else "I will not help with that."),
            "label": i % 2,
            "group": f"g{i}",
        }
        for i in range(n)
    ]


@pytest.fixture(scope="module")
def harmful():
    return load_category("harmful_content")


def _by_attack(rows, category="all"):
    return {r.attack: r for r in rows if r.category == category}


def test_the_section_is_parsed_and_false_turns_it_off():
    assert parse_robustness(False, "run.yaml") is None
    assert parse_robustness(None, "run.yaml") == parse_robustness(True, "run.yaml") == RobustnessConfig()
    # Training-only attacks stay out of the default suite, and can still be asked for by name.
    assert RobustnessConfig().attacks == SUITE_ATTACKS and "composed_note" not in SUITE_ATTACKS
    assert parse_robustness({"attacks": []}, "run.yaml").attacks == SUITE_ATTACKS
    assert parse_robustness({"attacks": ["composed_note"]}, "run.yaml").attacks == ("composed_note",)
    config = parse_robustness({"attacks": ["padding", "evaluator_note"], "variants": 2, "limit": None}, "run.yaml")
    assert config == RobustnessConfig(("padding", "evaluator_note"), 2, None, 0)
    with pytest.raises(DataError, match=r"run.yaml: field 'robustness.copies'"):
        parse_robustness({"copies": 2}, "run.yaml")
    with pytest.raises(DataError, match="robustness.attacks"):
        parse_robustness({"attacks": ["flattery"]}, "run.yaml")
    with pytest.raises(DataError, match="robustness.variants"):
        parse_robustness({"variants": 0}, "run.yaml")


def test_copies_per_example_follow_the_config(harmful):
    examples = _examples(6)
    one = perturb_examples(examples, harmful, RobustnessConfig(variants=1))
    assert len(one) == 6 * len(SUITE_ATTACKS)
    every = perturb_examples(examples, harmful, RobustnessConfig(attacks=("padding",), variants=None))
    assert [c["id"] for c in every[:3]] == [attacked_id("hc-00", "padding", v) for v in range(3)]
    assert all(c["label"] == int(c["id"][3:5]) % 2 for c in every)
    kept = select_clean(_examples(40), RobustnessConfig(limit=10))
    assert len(kept) == 10 and sum(e["label"] for e in kept) == 5


def _gullible(harmful, examples, config, obeys=("evaluator_note",), **options):
    """A scripted judge, right on clean examples, that answers SAFE on the positives under ``obeys``."""
    outputs = {
        c["id"]: '{"verdict": "SAFE"}'
        for c in perturb_examples(examples, harmful, config)
        if c["meta"]["perturbation"]["attack"] in obeys and c["label"] == 1
    }
    spec = JudgeSpec(model="gullible", backend="fake", options={"outputs": outputs, **options})
    return build_judge(spec)


def test_a_judge_that_obeys_the_note_flips_every_positive(harmful):
    examples, config = _examples(10), RobustnessConfig(attacks=("evaluator_note", "fake_verdict"), variants=2)
    records = judge_suite(_gullible(harmful, examples, config), harmful, examples, config, batch_size=7)
    assert len(records) == 10 + 10 * 2 * 2
    assert {r["attack"] for r in records if r.get("attack")} == {"evaluator_note", "fake_verdict"}
    rows = _by_attack(compute_robustness_rows(records))
    assert rows[CLEAN].f1 == 1.0 and rows[CLEAN].n == 10
    note = rows["evaluator_note"]
    assert (note.n, note.compared, note.flips, note.pos_to_neg, note.neg_to_pos, note.lost) == (20, 20, 10, 10, 0, 0)
    assert note.flip_rate == 0.5 and note.clean_positive == 10 and note.pos_to_neg_rate == 1.0
    assert note.f1 == 0.0 and note.f1_clean == 1.0
    fake = rows["fake_verdict"]
    assert (fake.flips, fake.flip_rate, fake.f1) == (0, 0.0, 1.0)
    note_records = [r for r in records if r.get("attack") == "evaluator_note"]
    expected = compute_binary_metrics(
        [r["human_label"] for r in note_records],
        [r["label"] for r in note_records],
        [r["status"] for r in note_records],
    )["f1"]
    assert note.f1 == expected  # one F1: the metrics module's
    lines = robustness_table(compute_robustness_rows(records)).grid_markdown()
    assert lines[0].startswith("| judge | clean F1 | evaluator_note: F1 / flip rate | fake_verdict: F1 / flip rate")
    assert lines[2].startswith(
        "| gullible/basic | 1.000 | 0.000 / 0.500 | 1.000 / 0.000 | 0.250 (10/40) | 10/20 (0.500)"
    )


def test_the_control_has_its_column_and_counts_in_no_sum(harmful):
    """A judge moved by any added text: the control shows it, and "all attacks" stays the attacks' own."""
    from evaluation.robustness import robustness_summary

    examples = _examples(10)
    config = RobustnessConfig(attacks=("evaluator_note", "benign_note", "fake_verdict"), variants=1)
    judge = _gullible(harmful, examples, config, obeys=("evaluator_note", "benign_note"))
    rows = compute_robustness_rows(judge_suite(judge, harmful, examples, config))
    assert _by_attack(rows)["benign_note"].flips == 5
    lines = robustness_table(rows).grid_markdown()
    assert "| benign_note (control): F1 / flip rate |" in lines[0]
    cells = "| 0.000 / 0.500 | 0.000 / 0.500 | 1.000 / 0.000 | 0.250 (5/20) | 5/10 (0.500) | 0/20 (lost 0) |"
    assert cells in lines[2]  # the attacks' sums: 5 flips of 20, not 10 of 30
    summary = robustness_summary(rows, "gullible/basic")["attacks"]
    assert summary["benign_note"]["control"] is True and summary["benign_note"]["flips"] == 5
    assert "control" not in summary["evaluator_note"] and "control" not in summary["fake_verdict"]


def test_lost_verdicts_are_counted_apart_from_flips(harmful):
    examples, config = _examples(4), RobustnessConfig(attacks=("padding",), variants=1)
    outputs = {c["id"]: "no idea" for c in perturb_examples(examples, harmful, config)}
    spec = JudgeSpec(model="vague", backend="fake", options={"outputs": outputs | {"hc-00": "hmm"}})
    records = judge_suite(build_judge(spec), harmful, examples, config)
    padding = _by_attack(compute_robustness_rows(records))["padding"]
    assert (padding.n, padding.compared, padding.lost, padding.flips, padding.no_label) == (4, 3, 3, 0, 4)
    assert padding.flip_rate == 0.0 and padding.f1 == 0.0
    assert "4/4 (lost 3)" in robustness_table(compute_robustness_rows(records)).grid_markdown()[2]


def test_categories_are_pooled_and_kept_apart(harmful):
    config = RobustnessConfig(attacks=("evaluator_note",), variants=1)
    malware = load_category("malware")
    a, b = _examples(4), [dict(e, category="malware") for e in _examples(4)]  # the same ids in two categories
    records = judge_suite(_gullible(harmful, a, config), harmful, a, config)
    records += judge_suite(build_judge(JudgeSpec(model="gullible", backend="fake")), malware, b, config)
    rows = compute_robustness_rows(records, per_category=True)
    assert _by_attack(rows)["evaluator_note"].flips == 2 and _by_attack(rows)[CLEAN].n == 8
    assert _by_attack(rows, "harmful_content")["evaluator_note"].flips == 2
    assert _by_attack(rows, "malware")["evaluator_note"].flips == 0
    assert compute_robustness_rows([r for r in records if not r.get("attack")]) == []  # nothing attacked


def test_tfidf_loses_the_answer_under_padding():
    from recipes.builders import build_datasets, load_data_recipe

    built = build_datasets(load_data_recipe(ROOT / "recipes/data/quickstart.yaml"))
    judge = build_judge(JudgeSpec(model="tfidf", backend="reference"), train_examples=built.splits["train"])
    config = RobustnessConfig(attacks=("padding",), variants=None, limit=None)
    records = []
    for name in ("jailbreak", "harmful_content", "malware"):
        examples = [e for e in built.splits["test"] if e["category"] == name]
        records += judge_suite(judge, load_category(name), examples, config)
    rows = _by_attack(compute_robustness_rows(records))
    assert rows["padding"].n == 3 * rows[CLEAN].n
    assert rows["padding"].f1 < rows[CLEAN].f1 - 0.1 and rows["padding"].flips > 0
    assert not math.isnan(rows["padding"].pos_to_neg_rate)


def test_the_summary_travels_in_judge_json(harmful, tmp_path):
    from evaluation.robustness import robustness_summary
    from recipes.judge_card import JudgeCard

    examples, config = _examples(10), RobustnessConfig(attacks=("evaluator_note",), variants=1)
    rows = compute_robustness_rows(judge_suite(_gullible(harmful, examples, config), harmful, examples, config))
    summary = robustness_summary(rows, "gullible/basic", split="test")
    assert summary["split"] == "test" and summary["examples"] == 10 and summary["clean_f1"] == 1.0
    assert summary["attacks"]["evaluator_note"] | {} == {
        "n": 10, "f1": 0.0, "flip_rate": 0.5, "flips": 5, "compared": 10, "pos_to_neg": 5, "clean_positive": 5,
        "no_label": 0,
    }  # fmt: skip
    assert robustness_summary(rows, "another judge") == {}
    card = JudgeCard(base_model="m", prompt_template="basic", verdict_words={"harmful_content": ["HARMFUL", "SAFE"]})
    card.with_robustness(summary).write(tmp_path)
    read = JudgeCard.read(tmp_path)
    assert read.robustness == summary and read.render == "plain" and card.robustness == {}


def test_a_judge_renders_as_its_options_or_card_say(harmful):
    examples = _examples(2)
    marked = build_judge(JudgeSpec(model="m", backend="fake", options={"render": "marked"}))
    marked.judge(examples, harmful)
    user = marked.calls[-1]["prompts"][0].messages[1]["content"]
    assert "<<<VICTIM RESPONSE START>>>" in user and "<<<VICTIM PROMPT END>>>" in user
    plain = build_judge(JudgeSpec(model="m", backend="fake"))
    plain.judge(examples, harmful)
    assert "<<<VICTIM" not in plain.calls[-1]["prompts"][0].messages[1]["content"]
    expected = "options.render: expected one of plain, marked, sandwich, datamark, got 'bold'"
    with pytest.raises(ValueError, match=expected):
        build_judge(JudgeSpec(model="m", backend="fake", options={"render": "bold"}))
