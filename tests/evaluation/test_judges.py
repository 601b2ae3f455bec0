"""Judge specs, the factory, and the fake backend's script."""

from __future__ import annotations

import pytest

from evaluation.judges import Judge, JudgeSpec, build_judge
from recipes.categories import load_category
from recipes.schema import DataError


EXAMPLES = [{"id": f"e{i}", "prompt": f"q{i}", "response": f"a{i}", "label": i % 2} for i in range(4)]


def test_spec_defaults_and_validation(tmp_path):
    assert JudgeSpec("org/Some-Model-7B", prompt="cot").name == "Some-Model-7B/cot"
    assert JudgeSpec("meta-llama/Llama-Guard-3-1B", backend="guard").name == "Llama-Guard-3-1B"
    (tmp_path / "judge.json").write_text("{}")
    assert JudgeSpec(str(tmp_path)).name == f"{tmp_path.name}/tuned"
    with pytest.raises(ValueError, match="field 'backend'"):
        JudgeSpec("m", backend="carrier-pigeon")
    with pytest.raises(ValueError, match="field 'batch_size'"):
        JudgeSpec("m", batch_size=0)


def test_unknown_prompt_is_refused_before_work():
    with pytest.raises(DataError, match="field 'prompt'"):
        build_judge(JudgeSpec("m", prompt="nonexistent", backend="fake"))


def test_vllm_missing_shows_the_pip_line():
    pytest.importorskip("torch")
    try:
        import vllm  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("vLLM is installed here")
    with pytest.raises(ImportError, match="pip install"):
        build_judge(JudgeSpec("m", backend="vllm"))


def test_fake_oracle_flip_and_script():
    category = load_category("jailbreak")
    oracle = build_judge(JudgeSpec("m", backend="fake", options={"flip": ["e1"]}))
    assert isinstance(oracle, Judge)
    assert [r.label for r in oracle.judge(EXAMPLES, category)] == [0, 0, 0, 1]
    scripted = build_judge(
        JudgeSpec(
            "m",
            backend="fake",
            options={
                "outputs": ['{"verdict": "JAILBROKEN"}', "I'm sorry, I can't judge this.", "nothing", {"error": "x"}]
            },
        )
    )
    results = scripted.judge(EXAMPLES, category)
    assert [r.status for r in results] == ["ok", "refusal", "invalid", "error"]
    assert [r.label for r in results] == [1, None, None, None]
    assert scripted.calls[0]["seed"] == 0
    scripted.judge(EXAMPLES, category, repeat=2)
    assert scripted.calls[1]["seed"] == 2


def test_fake_probabilities_and_score_reads():
    category = load_category("jailbreak")
    probs = build_judge(JudgeSpec("m", backend="fake", options={"outputs": {"e0": {"probs": [0.7, 0.3]}}}))
    result = probs.judge(EXAMPLES[:1], category)[0]
    assert (result.label, result.p_positive, result.raw) == (1, 0.7, '{"verdict": "JAILBROKEN"}')
    score = build_judge(
        JudgeSpec("m", prompt="score", backend="fake", options={"outputs": [{"probs": [0.1, 0.2, 0.3, 0.25, 0.15]}]})
    )
    result = score.judge(EXAMPLES[:1], category)[0]
    # arg-max score 3 (>= threshold 3) -> positive; P(score >= 3) = 0.3 + 0.25 + 0.15
    assert (result.label, result.score) == (1, 3)
    assert result.p_positive == pytest.approx(0.7)


def test_unrenderable_example_is_an_error_not_an_exception():
    category = load_category("jailbreak")
    judge = build_judge(JudgeSpec("m", backend="fake"))
    results = judge.judge([{"id": "bad", "prompt": "q"}, EXAMPLES[1]], category)
    assert results[0].status == "error" and "render" in results[0].error
    assert results[1].status == "ok"
