"""The registry: what each built-in backend and judge kind answers, typed options, unknown names."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest
from test_runs import base_recipe, recipe_file

from evaluation import registry
from evaluation.backends.options import FakeOptions, HFOptions, OpenAIOptions, ReferenceOptions, VLLMOptions
from evaluation.guards.options import GuardOptions
from evaluation.judges import JudgeSpec, build_judge
from evaluation.plan import plan
from evaluation.run_recipe import RunRecipeError, load_run_recipe
from evaluation.runs import run_eval_file
from evaluation.store import RESULTS_FILE
from recipes.prompts import FieldBudget
from recipes.schema import DataError


# name: (local, deterministic rule, options class, takes seed, takes budget, uses the prompt)
BUILT_INS = {
    "hf": (True, "greedy", HFOptions, True, True, True),
    "openai": (False, "never", OpenAIOptions, True, True, True),
    "vllm": (True, "greedy", VLLMOptions, True, True, True),
    "guard": (True, "greedy", GuardOptions, True, True, False),
    "reference": (False, "always", ReferenceOptions, False, False, False),
    "fake": (False, "never", FakeOptions, True, True, True),
}


@pytest.mark.parametrize("name", list(BUILT_INS))
def test_each_built_in_backend_answers_what_the_rest_asks(name):
    local, rule, options, seed, budget, prompt = BUILT_INS[name]
    entry = registry.backend(name)
    assert (entry.local, entry.deterministic, entry.options) == (local, rule, options)
    assert (entry.takes_seed, entry.takes_budget, entry.uses_prompt) == (seed, budget, prompt)
    assert dataclasses.is_dataclass(entry.options) and entry.options.__dataclass_params__.frozen
    assert all(f.metadata.get("help") for f in dataclasses.fields(entry.options))
    greedy = JudgeSpec("tfidf" if name == "reference" else "m", backend=name, temperature=0.0)
    sampled = dataclasses.replace(greedy, temperature=0.7)
    assert registry.is_deterministic(greedy) == (rule != "never")
    assert registry.is_deterministic(sampled) == (rule == "always")
    assert registry.is_deterministic(dataclasses.replace(sampled, options={"deterministic": True}))
    assert not registry.is_deterministic(dataclasses.replace(greedy, options={"deterministic": False}))


@pytest.mark.parametrize(
    ("name", "good", "bad"),
    [
        ("hf", ["smollm2-135m", "org/Some-Model"], ["smollm2-13m", "./no/such/folder"]),
        ("vllm", ["Qwen/Qwen2.5-7B-Instruct"], ["qwen-7b"]),
        ("guard", ["meta-llama/Llama-Guard-3-1B"], ["llama-guard"]),
        ("reference", ["tfidf", "refusal_phrases"], ["bm25"]),
        ("openai", ["gpt-4o", "anything at all"], []),
        ("fake", ["whatever"], []),
    ],
)
def test_model_checks_per_backend(name, good, bad, tmp_path):
    entry = registry.backend(name)
    for model in good:
        assert entry.model_problem(model) is None, model
    for model in bad:
        assert entry.model_problem(model), model
    if entry.local:
        assert entry.model_problem(str(tmp_path)) is None  # an existing folder


def test_unknown_backend_names_the_known_ones(tmp_path):
    with pytest.raises(DataError) as caught:
        registry.backend("carrier-pigeon")
    for name in BUILT_INS:
        assert name in str(caught.value)
    with pytest.raises(ValueError, match="field 'backend'.*'hf', 'openai'"):
        JudgeSpec("m", backend="carrier-pigeon")
    data = base_recipe(tmp_path, judges=[{"models": ["m"], "prompts": ["basic"], "backend": "carrier-pigeon"}])
    with pytest.raises(RunRecipeError) as caught:
        load_run_recipe(recipe_file(tmp_path, data))
    assert "field 'judges[0].backend'" in str(caught.value) and "'fake'" in str(caught.value)


def test_judge_kinds_order_the_report_and_name_the_floor():
    assert registry.report_order() == {"tuned": 0, "second_level": 1, "prompted": 2, "guard": 3, "reference": 4}
    assert registry.floor_kind() == "reference"
    assert registry.judge_kind("tuned").name_for("runs/quick/judge/") == "tuned:judge"
    assert registry.judge_kind("reference").name_for("tfidf") == "reference/tfidf"
    assert registry.judge_kind("prompted").name_for("m") == ""  # the spec's own default name
    assert [k.name for k in registry.judge_kinds() if k.sees_data_budget] == ["second_level", "prompted"]
    with pytest.raises(KeyError, match="known: tuned, second_level"):
        registry.judge_kind("oracle")


def test_the_judge_command_asks_the_registry_which_backend_a_model_name_implies():
    assert registry.backend_for_model("meta-llama/Llama-Guard-3-8B", "hf") == ("guard", {"kind": "llama_guard"})
    assert registry.backend_for_model("google/shieldgemma-2b", "hf") == ("guard", {"kind": "shieldgemma"})
    assert registry.backend_for_model("smollm2-135m", "hf") == ("hf", {})


def test_options_are_typed_and_converted_as_the_backends_read_them():
    hf = registry.parse_options("hf", {"max_batch_tokens": "4096", "prefix_cache": False, "budget": {}}, "x")
    assert isinstance(hf, HFOptions) and hf.max_batch_tokens == 4096 and hf.prefix_cache is False
    assert hf.budget == FieldBudget() and hf.read == "auto"
    per_category = registry.parse_options("hf", {"budget": {"categories": {"jailbreak": {"response_chars": 9}}}}, "x")
    assert per_category.budget.for_category("jailbreak").response_chars == 9
    assert per_category.budget.for_category("malware") == FieldBudget(categories=per_category.budget.categories)
    openai = registry.parse_options("openai", {"concurrency": 3, "extra_body": None}, "x")
    assert (openai.concurrency, openai.extra_body, openai.model) == (3, {}, None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        hf.read = "generate"


@pytest.mark.parametrize(
    ("backend", "options", "message"),
    [
        (
            "hf",
            {"prefx_cache": True},
            "r.yaml: judges[2].options.prefx_cache: unknown key; known: seed, deterministic",
        ),
        ("hf", {"read": "telepathy"}, "judges[2].options.read: expected one of auto, logits, generate"),
        ("hf", {"max_batch_tokens": "many"}, "judges[2].options.max_batch_tokens: expected an integer, got 'many'"),
        (
            "hf",
            {"budget": {"prompt_char": 9}},
            "judges[2].options.budget.prompt_char: unknown key; known: prompt_chars",
        ),
        (
            "hf",
            {"budget": {"categories": {"jailbreak": {"prompt_char": 9}}}},
            "judges[2].options.budget.categories.jailbreak.prompt_char: unknown key; known: prompt_chars",
        ),
        ("hf", {"budget": {"response_chars": -1}}, "judges[2].options.budget.response_chars: expected a non-negative"),
        ("openai", {"max_concurrency": 8}, "options.max_concurrency: unknown key; known: seed, deterministic, budget"),
        ("openai", {"api_key": "sk-secret-value"}, "options.api_key: unknown key"),  # keys: environment only
        ("guard", {"kind": "wildguard"}, "options.kind: expected one of None, llama_guard, shieldgemma"),
        ("reference", {"budget": {}}, "options.budget: unknown key; known: seed, deterministic, threshold"),
    ],
)
def test_a_bad_option_names_the_key_path_and_the_known_keys(backend, options, message):
    with pytest.raises(DataError) as caught:
        registry.parse_options(backend, options, "r.yaml: judges[2]")
    assert message in str(caught.value) and "sk-secret-value" not in str(caught.value)
    assert caught.value.file == "r.yaml" and caught.value.field.startswith("judges[2].options.")


def test_an_option_typo_fails_before_any_model_loads(tmp_path, monkeypatch):
    import evaluation.backends.hf_loading as loading

    def no_loading(*args, **kwargs):
        raise AssertionError("a model was loaded before the options were checked")

    monkeypatch.setattr(loading, "load_causal_lm", no_loading)
    with pytest.raises(DataError, match=r"options.prefx_cache: unknown key; known: .*prefix_cache"):
        build_judge(JudgeSpec("smollm2-135m", options={"prefx_cache": True}))
    # In a run recipe: refused by the check with the file and key path, before any output exists.
    data = base_recipe(
        tmp_path,
        judges=[
            {"models": ["fake-a"], "prompts": ["basic"], "backend": "fake"},
            {"models": ["smollm2-135m"], "prompts": ["basic"], "backend": "hf", "options": {"prefx_cache": True}},
        ],
        guards=[{"model": "meta-llama/Llama-Guard-3-1B", "kind": "llama_guard", "options": {"thresold": 0.3}}],
    )
    path = recipe_file(tmp_path, data)
    with pytest.raises(RunRecipeError) as caught:
        run_eval_file(path, tmp_path / "out")
    message = str(caught.value)
    # One format for every recipe problem (the loader's): file, key path, the known keys.
    known = "seed, deterministic, budget, render, dtype"
    assert f"{path}: field 'judges[1].options.prefx_cache': expected a known key ({known}" in message
    assert f"{path}: field 'guards[0].options.thresold': expected a known key (" in message
    assert not (tmp_path / "out" / RESULTS_FILE).exists()
    with pytest.raises(RunRecipeError, match=r"judges\[1\].options.prefx_cache"):
        plan(load_run_recipe(path))


def test_the_recipes_shipped_with_the_project_pass_the_option_checks():
    for name in ("quickstart", "gptfuzz_cpu", "paper"):
        recipe = load_run_recipe(f"recipes/runs/{name}.yaml")
        for i, group in enumerate(recipe.judges):
            registry.parse_options(group.backend, group.options, f"{name}: judges[{i}]")
        for i, review in enumerate(recipe.second_level):
            registry.parse_options(review.reviewer.backend, review.reviewer.options, f"{name}: second_level[{i}]")


def test_importing_the_registry_loads_no_torch():
    code = "import sys, evaluation.registry, evaluation.judges, evaluation.run_recipe; print(sorted(" \
           "m for m in ('torch', 'transformers', 'vllm') if m in sys.modules))"  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_a_backend_name_is_registered_once(monkeypatch):
    monkeypatch.setattr(registry, "_BACKENDS", dict(registry._BACKENDS))
    with pytest.raises(ValueError, match="already registered"):
        registry.register_backend("hf", "somewhere.else:Judge")
