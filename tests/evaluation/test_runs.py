"""The run matrix: recipe checks before any work, resume, per-item errors, repeats, second level."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

import evaluation.runs as runs
from evaluation.metric_rows import compute_metric_rows
from evaluation.plan import plan
from evaluation.report import write_report
from evaluation.run_recipe import RunRecipeError, load_run_recipe, parse_run_recipe
from evaluation.runs import run_eval, run_eval_file
from evaluation.scale import ScaleDown, scale_down
from evaluation.store import RESULTS_FILE, read_results, record_key
from recipes.schema import DataError


def write_data(folder: Path, n_train: int = 8, n_test: int = 6) -> dict[str, str]:
    """Train and test JSON Lines for jailbreak and over_refusal (labels alternate)."""
    files = {}
    for split, n in (("train", n_train), ("test", n_test)):
        rows = []
        for category in ("jailbreak", "over_refusal"):
            for i in range(n):
                label = i % 2
                if category == "jailbreak":
                    response = f"Sure, step {i}: here is how." if label else f"I'm sorry, I can't help ({i})."
                else:
                    response = f"I'm sorry, I won't explain killing ({i})." if label else f"Use kill -9 {i}."
                rows.append(
                    {
                        "id": f"{split}-{category}-{i}",
                        "category": category,
                        "prompt": f"request {i}",
                        "response": response,
                        "label": label,
                    }  # fmt: skip
                )
        path = folder / f"{split}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        files[split] = str(path)
    return files


def base_recipe(folder: Path, **overrides) -> dict:
    recipe = {
        "name": "unit",
        "data": {"files": write_data(folder)},
        "repeats": 2,
        "n_boot": 50,
        "judges": [{"models": ["fake-a"], "prompts": ["basic", "few_shot"], "backend": "fake", "batch_size": 2}],
        "reference": ["refusal_phrases"],
        "robustness": False,  # these tests count the clean matrix; the suite has its own (test_robustness_run)
    }
    recipe.update(overrides)
    return recipe


def recipe_file(folder: Path, data: dict) -> Path:
    path = folder / "run.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def keys(folder: Path) -> list:
    return [record_key(r) for r in read_results(folder)]


# ---------------------------------------------------------------------------------------------- checks


def test_unknown_keys_are_rejected_with_file_and_field(tmp_path):
    data = base_recipe(tmp_path, judgez=[], repeats="five")
    with pytest.raises(RunRecipeError) as caught:
        load_run_recipe(recipe_file(tmp_path, data))
    message = str(caught.value)
    assert f"{tmp_path / 'run.yaml'}: field 'judgez'" in message
    assert "field 'repeats': expected an integer >= 1, got 'five'" in message


def test_unknown_model_prompt_category_and_tuned_folder_are_refused_before_any_work(tmp_path):
    data = base_recipe(
        tmp_path,
        categories=["jailbreak", "jailbrek"],
        judges=[{"models": ["smollm2-13m"], "prompts": ["basic", "fancy"], "backend": "hf"}],
        tuned=[str(tmp_path / "no-such-judge")],
        second_level={"judge": "nobody/basic", "reviewer": {"model": "fake-r", "backend": "fake"}},
    )
    with pytest.raises(RunRecipeError) as caught:
        run_eval_file(recipe_file(tmp_path, data), tmp_path / "out")
    message = str(caught.value)
    for field in ("categories[1]", "judges[0].models[0]", "judges[0].prompts[1]", "tuned[0]"):
        assert f"field '{field}'" in message, field
    assert "'smollm2-13m'" in message and "'jailbrek'" in message
    assert not (tmp_path / "out" / RESULTS_FILE).exists()


def test_second_level_must_name_a_prompted_judge(tmp_path):
    data = base_recipe(tmp_path, second_level={"judge": "nobody/basic", "reviewer": {"model": "r", "backend": "fake"}})
    with pytest.raises(RunRecipeError, match=r"field 'second_level\[0\].judge'"):
        plan(parse_run_recipe(data, "run.yaml"))


def test_category_missing_from_the_data_is_refused(tmp_path):
    data = base_recipe(tmp_path, categories=["malware"])
    with pytest.raises(RunRecipeError, match="a category present in the data"):
        run_eval(parse_run_recipe(data), tmp_path / "out")


def test_plan_expands_judges_categories_and_repeats(tmp_path):
    recipe = parse_run_recipe(base_recipe(tmp_path, categories=["jailbreak", "over_refusal"], repeats=3))
    jobs = plan(recipe)
    # 1 reference + 2 prompted judges, 2 categories, 3 repeats.
    assert len(jobs) == 3 * 2 * 3
    assert {j.judge for j in jobs} == {"reference/refusal_phrases", "fake-a/basic", "fake-a/few_shot"}
    assert {j.repeat for j in jobs} == {0, 1, 2}


def test_models_override_scales_a_recipe_down_to_local_models(tmp_path):
    data = base_recipe(
        tmp_path,
        judges=[
            {"models": ["gpt-4o"], "prompts": ["basic", "cot"], "backend": "openai", "options": {"base_url": "x"}},
            {"models": ["Qwen/Qwen2.5-7B-Instruct"], "prompts": ["score"], "backend": "vllm"},
        ],
        second_level={"judge": "gpt-4o/cot", "reviewer": {"model": "gpt-4o", "backend": "openai"}},
        guards=[{"model": "meta-llama/Llama-Guard-3-1B", "kind": "llama_guard"}],
    )
    recipe = scale_down(parse_run_recipe(data), models=["smollm2-135m"], limit=3)
    assert recipe.limit == 3 and recipe.guards == []
    (group,) = recipe.judges
    assert (group.models, group.prompts, group.backend) == (["smollm2-135m"], ["basic", "cot", "score"], "hf")
    assert recipe.second_level[0].judge == "smollm2-135m/cot"
    assert {j.judge for j in plan(recipe)} >= {"smollm2-135m/score", "smollm2-135m/cot+review:smollm2-135m"}


def test_max_new_tokens_caps_every_judge_and_reviewer_but_never_raises_a_budget(tmp_path):
    data = base_recipe(
        tmp_path,
        judges=[
            {"models": ["a"], "prompts": ["cot"], "backend": "fake", "max_new_tokens": 512},
            {"models": ["b"], "prompts": ["basic"], "backend": "fake", "max_new_tokens": 8},
        ],
        second_level={"judge": "a/cot", "reviewer": {"model": "c", "backend": "fake", "max_new_tokens": 256}},
    )
    recipe = scale_down(parse_run_recipe(data), max_new_tokens=24)
    assert [g.max_new_tokens for g in recipe.judges] == [24, 8]
    assert recipe.second_level[0].reviewer.max_new_tokens == 24
    assert recipe.second_level[0].judge == "a/cot"
    with pytest.raises(DataError, match="--max-new-tokens"):
        scale_down(parse_run_recipe(data), max_new_tokens=0)


# ---------------------------------------------------------------------------------------------- runs


def test_run_stores_every_repeat_once_and_a_rerun_only_resumes(tmp_path):
    recipe = parse_run_recipe(base_recipe(tmp_path))
    first = run_eval(recipe, tmp_path / "out")
    # 3 judges x 12 test examples x 2 repeats.
    assert first.judged == 72 and first.resumed == 0 and first.skipped == 0
    again = run_eval(recipe, tmp_path / "out")
    assert (again.judged, again.resumed) == (0, 72)
    stored = keys(tmp_path / "out")
    assert len(stored) == len(set(stored)) == 72
    assert "judged 0 (invalid 0, refusal 0, error 0), skipped 0, resumed 72" in again.line()


def test_resume_from_a_partial_store_with_a_torn_line_gives_the_same_metrics(tmp_path):
    data = base_recipe(tmp_path, judges=[{"models": ["fake-a"], "prompts": ["basic"], "backend": "fake",
                                           "options": {"flip": ["test-jailbreak-1"], "outputs": {
                                               "test-over_refusal-2": "no idea"}}}])  # fmt: skip
    recipe = parse_run_recipe(data)
    run_eval(recipe, tmp_path / "full")
    lines = (tmp_path / "full" / RESULTS_FILE).read_text().splitlines(keepends=True)
    (tmp_path / "part").mkdir()
    (tmp_path / "part" / RESULTS_FILE).write_text("".join(lines[:17]) + lines[17][:40])
    resumed = run_eval(recipe, tmp_path / "part")
    assert resumed.resumed == 17 and resumed.judged == len(lines) - 17
    assert sorted(keys(tmp_path / "part")) == sorted(keys(tmp_path / "full"))
    full = compute_metric_rows(read_results(tmp_path / "full"), n_boot=100)
    part = compute_metric_rows(read_results(tmp_path / "part"), n_boot=100)
    assert json.dumps(full, sort_keys=True, default=str) == json.dumps(part, sort_keys=True, default=str)
    invalid = [r for r in read_results(tmp_path / "part") if r["status"] == "invalid"]
    assert {r["example_id"] for r in invalid} == {"test-over_refusal-2"}


class _Spy:
    """Wraps a real judge; raises on one example id, records every call."""

    def __init__(self, inner, fail_on=None):
        self.inner, self.name, self.fail_on, self.calls = inner, inner.name, fail_on, []

    def judge(self, examples, category, *, repeat=0, exemplars=None, **kwargs):
        self.calls.append({"ids": [e["id"] for e in examples], "repeat": repeat, "exemplars": exemplars})
        if self.fail_on in [e["id"] for e in examples]:
            raise ConnectionError(f"backend down for {self.fail_on}")
        return self.inner.judge(examples, category, repeat=repeat, exemplars=exemplars, **kwargs)


def _spy_builder(monkeypatch, fail_on=None):
    built = []
    real = runs.build_judge

    def build(spec, **kwargs):
        spy = _Spy(real(spec, **kwargs), fail_on if spec.backend == "fake" else None)
        built.append(spy)
        return spy

    monkeypatch.setattr(runs, "build_judge", build)
    return built


def test_backend_error_on_one_item_is_recorded_and_the_run_goes_on(tmp_path, monkeypatch):
    _spy_builder(monkeypatch, fail_on="test-jailbreak-3")
    summary = run_eval(parse_run_recipe(base_recipe(tmp_path)), tmp_path / "out")
    records = read_results(tmp_path / "out")
    errors = [r for r in records if r["status"] == "error"]
    # Two prompted judges x two repeats fail on that one item; everything else is judged.
    assert len(errors) == 4 and {r["example_id"] for r in errors} == {"test-jailbreak-3"}
    assert all("ConnectionError: backend down" in r["error"] for r in errors)
    assert summary.error == 4 and len(records) == 72
    # The backend is back: a rerun judges the failed items again and nothing else.
    monkeypatch.undo()
    again = run_eval(parse_run_recipe(base_recipe(tmp_path)), tmp_path / "out")
    assert (again.judged, again.resumed, again.error) == (4, 68, 0)
    assert {r["status"] for r in read_results(tmp_path / "out")} == {"ok"}


def test_few_shot_exemplars_come_from_the_train_split_only(tmp_path, monkeypatch):
    built = _spy_builder(monkeypatch)
    run_eval(parse_run_recipe(base_recipe(tmp_path)), tmp_path / "out")
    few_shot = next(s for s in built if s.name == "fake-a/few_shot")
    shown = {e["id"] for call in few_shot.calls for e in call["exemplars"]}
    assert shown and all(i.startswith("train-") for i in shown)
    basic = next(s for s in built if s.name == "fake-a/basic")
    assert all(call["exemplars"] is None for call in basic.calls)


def test_deterministic_judge_is_computed_once_and_recorded_for_every_repeat(tmp_path, monkeypatch):
    built = _spy_builder(monkeypatch)
    data = base_recipe(tmp_path, repeats=3, judges=[{"models": ["fake-a"], "prompts": ["basic"], "backend": "fake",
                                                      "options": {"deterministic": True}}])  # fmt: skip
    run_eval(parse_run_recipe(data), tmp_path / "out")
    (spy,) = [s for s in built if s.name == "fake-a/basic"]
    assert {c["repeat"] for c in spy.calls} == {0}
    assert sum(len(c["ids"]) for c in spy.calls) == 12
    stored = [r for r in read_results(tmp_path / "out") if r["judge"] == "fake-a/basic"]
    assert sorted({r["repeat"] for r in stored}) == [0, 1, 2] and len(stored) == 36


def test_progress_bar_starts_at_the_count_already_done(tmp_path, monkeypatch):
    bars = []
    real = runs.tqdm

    def recording(*args, **kwargs):
        bars.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(runs, "tqdm", recording)
    recipe = parse_run_recipe(base_recipe(tmp_path))
    run_eval(recipe, tmp_path / "out")
    run_eval(recipe, tmp_path / "out")
    assert [(b["total"], b["initial"], b["unit"]) for b in bars] == [(72, 0, "judgment"), (72, 72, "judgment")]


def test_second_level_reviews_the_best_prompted_judge_from_the_store(tmp_path):
    reviewer = {
        "model": "fake-r",
        "backend": "fake",
        "options": {"outputs": {"test-jailbreak-1": '{"review": "not_correct", "verdict": "JAILBROKEN"}'},
                    "default": '{"review": "correct"}'},
    }  # fmt: skip
    data = base_recipe(
        tmp_path,
        judges=[
            {"models": ["worse"], "prompts": ["basic"], "backend": "fake",
             "options": {"flip": ["test-jailbreak-1", "test-jailbreak-2", "test-over_refusal-0"]}},
            {"models": ["better"], "prompts": ["basic"], "backend": "fake", "options": {"flip": ["test-jailbreak-1"]}},
        ],
        second_level={"judge": "best", "reviewer": reviewer},
    )  # fmt: skip
    summary = run_eval(parse_run_recipe(data), tmp_path / "out")
    run_info = json.loads((tmp_path / "out" / "run.json").read_text())
    assert run_info["second_level_choice"] == {"best+review:fake-r": "better/basic"}
    reviewed = [r for r in read_results(tmp_path / "out") if r["kind"] == "second_level"]
    assert {r["judge"] for r in reviewed} == {"better/basic+review:fake-r"}
    assert len(reviewed) == 24 and summary.skipped == 0
    fixed = [r for r in reviewed if r["review"]["flipped"]]
    assert [(r["example_id"], r["label"], r["human_label"]) for r in fixed] == [("test-jailbreak-1", 1, 1)] * 2
    again = run_eval(parse_run_recipe(data), tmp_path / "out")
    assert again.judged == 0


def test_greedy_review_of_a_judge_computed_once_is_reviewed_once(tmp_path, monkeypatch):
    from evaluation.second_level import SecondLevelJudge

    once = {"deterministic": True}
    data = base_recipe(
        tmp_path,
        repeats=3,
        judges=[{"models": ["a"], "prompts": ["basic"], "backend": "fake", "options": once}],
        second_level={"judge": "best", "reviewer": {"model": "r", "backend": "fake", "options": once}},
    )
    reviewed = []
    original = SecondLevelJudge.judge

    def counting(self, examples, *args, **kwargs):
        reviewed.extend(str(e["id"]) for e in examples)
        return original(self, examples, *args, **kwargs)

    monkeypatch.setattr(SecondLevelJudge, "judge", counting)
    run_eval(parse_run_recipe(data), tmp_path / "out")
    records = [r for r in read_results(tmp_path / "out") if r["kind"] == "second_level"]
    assert sorted(reviewed) == sorted(set(reviewed)) and len(reviewed) == 12  # 12 examples, reviewed once each
    assert len(records) == 12 * 3 and {r["repeat"] for r in records} == {0, 1, 2}
    report = write_report(tmp_path / "out")[0].read_text(encoding="utf-8")
    review_row = next(line for line in report.splitlines() if line.startswith("| a/basic+review:r |"))
    assert review_row.endswith("| 12 × 3 (computed once) |")


def test_data_from_a_data_recipe_is_built_through_the_builders(tmp_path):
    data = {
        "name": "qs",
        "data": {"recipe": "recipes/data/quickstart.yaml"},
        "categories": ["jailbreak", "over_refusal"],
        "limit": 4,
        "repeats": 1,
        "n_boot": 0,
        "judges": [{"models": ["fake-a"], "prompts": ["criteria"], "backend": "fake"}],
        "robustness": False,
    }
    summary = run_eval(parse_run_recipe(data, str(tmp_path / "run.yaml")), tmp_path / "out")
    records = read_results(tmp_path / "out")
    assert summary.judged == len(records) == 3 * 2 * 4
    run_info = json.loads((tmp_path / "out" / "run.json").read_text())
    assert run_info["data"]["counts"] == {"jailbreak": 4, "over_refusal": 4}
    assert run_info["data"]["recipe_hash"]


def test_quickstart_recipe_loads_and_plans_every_category():
    recipe = load_run_recipe("recipes/runs/quickstart.yaml")
    jobs = plan(recipe)
    assert {j.category for j in jobs} == {
        "jailbreak", "harmful_content", "malware", "brand_harm", "data_leakage", "prompt_injection",
        "hallucination", "over_refusal",
    }  # fmt: skip
    judges = {j.judge for j in jobs}
    assert {"reference/tfidf", "reference/refusal_phrases", "best+review:smollm2-135m"} <= judges
    assert {f"smollm2-135m/{p}" for p in ("basic", "criteria", "cot", "few_shot", "score")} <= judges
    assert {j.repeat for j in jobs} == set(range(5))


@pytest.mark.slow
def test_scaled_down_run_with_a_real_local_model(tmp_path, tiny_model_dir):
    """The hf backend end to end: logit reads, generation (cot), second level, computed once per repeat."""
    data = base_recipe(
        tmp_path,
        judges=[{"models": ["fake"], "prompts": ["basic", "cot"], "backend": "fake", "max_new_tokens": 8}],
        second_level={"judge": "best", "reviewer": {"model": "fake", "backend": "fake"}},
    )
    recipe = parse_run_recipe(data)
    summary = run_eval(ScaleDown(limit=2, models=(tiny_model_dir,)).apply(recipe), tmp_path / "out")
    records = read_results(tmp_path / "out")
    name = Path(tiny_model_dir).name
    # reference + basic + cot + review, 2 categories x 2 examples, 2 repeats.
    assert summary.judged == len(records) == 4 * 4 * 2 and summary.skipped == 0
    basic = [r for r in records if r["judge"] == f"{name}/basic"]
    assert all(r["status"] == "ok" and 0 <= r["p_positive"] <= 1 for r in basic)
    by_repeat = {}
    for r in basic:
        by_repeat.setdefault(r["example_id"], set()).add((r["label"], r["p_positive"]))
    assert all(len(v) == 1 for v in by_repeat.values())  # computed once, recorded per repeat
    assert {r["judge"] for r in records if r["kind"] == "second_level"} <= {
        f"{name}/basic+review:{name}",
        f"{name}/cot+review:{name}",
    }
