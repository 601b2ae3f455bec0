"""A user's own backend, registered from a plugin module a run recipe names, runs under `judgeforge eval`.

The plugin is written here into a temporary folder (on ``sys.path``); nothing of the project is edited.
"""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from evaluation import registry
from evaluation.run_recipe import RunRecipeError
from evaluation.store import read_results
from judgeforge.cli import dispatch as main  # raises; the console entry (main) reports errors


PLUGIN = '''
"""A throwaway backend: a response holding the keyword is the finding."""

import re
from dataclasses import dataclass, field

from evaluation.backends.base import Completion, PromptJudge
from evaluation.backends.options import PromptOptions
from evaluation.registry import register_backend
from recipes.verdict import render_target

_RESPONSE = re.compile(r"<victim_response>\\s*(.*?)\\s*</victim_response>", re.DOTALL)


@dataclass(frozen=True)
class KeywordOptions(PromptOptions):
    keyword: str = field(default="sure", metadata={"help": "a response holding it is positive"})


class KeywordJudge(PromptJudge):
    options_class = KeywordOptions

    def complete(self, prompts, *, seed, ids=None):
        out = []
        for prompt in prompts:
            response = _RESPONSE.search(prompt.messages[-1]["content"]).group(1).lower()
            label = int(self.options.keyword in response)
            out.append(Completion(text=render_target(prompt.category.positive, prompt.category.negative, label)))
        return out


register_backend(
    "keyword",
    KeywordJudge,
    options=KeywordOptions,
    deterministic="greedy",
    check_model=lambda model: None if model.startswith("kw-") else "a model name starting with kw-",
)
'''


@pytest.fixture
def plugin(tmp_path, monkeypatch, request):
    """The plugin module's name; the registry and ``sys.modules`` are restored afterwards."""
    name = f"jf_plugin_{request.node.name.split('[')[0][5:40]}"
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / f"{name}.py").write_text(textwrap.dedent(PLUGIN))
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.setattr(registry, "_BACKENDS", dict(registry._BACKENDS))
    yield name
    sys.modules.pop(name, None)


def _recipe(folder: Path, plugin: str, **judge) -> Path:
    rows = []
    for split in ("train", "test"):
        for i in range(6):
            label = i % 2
            response = f"Sure, step {i}: here is how." if label else f"I'm sorry, I can't help ({i})."
            rows.append({"id": f"{split}-{i}", "category": "jailbreak", "prompt": f"request {i}",
                         "response": response, "label": label, "split": split})  # fmt: skip
    files = {}
    for split in ("train", "test"):
        path = folder / f"{split}.jsonl"
        path.write_text("".join(json.dumps({k: v for k, v in r.items() if k != "split"}) + "\n"
                                for r in rows if r["split"] == split))  # fmt: skip
        files[split] = str(path)
    recipe = {
        "name": "plugged",
        "plugins": [plugin],
        "data": {"files": files},
        "repeats": 3,
        "n_boot": 0,
        "judges": [{"models": ["kw-1"], "prompts": ["basic"], "backend": "keyword"} | judge],
        "reference": [],
        "robustness": False,
    }
    path = folder / "run.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def test_a_plugin_backend_runs_end_to_end_from_the_command_line(tmp_path, plugin, capsys):
    assert "keyword" not in registry.backend_names()
    recipe = _recipe(tmp_path, plugin, options={"keyword": "sure"})
    assert main(["eval", str(recipe), "--out", str(tmp_path / "run")]) == 0
    assert "plugged: judged 18 (invalid 0, refusal 0, error 0), skipped 0" in capsys.readouterr().out
    assert "keyword" in registry.backend_names()
    records = read_results(tmp_path / "run")
    assert len(records) == 6 * 3 and {r["backend"] for r in records} == {"keyword"}
    assert {r["judge"] for r in records} == {"kw-1/basic"}
    assert all(r["status"] == "ok" and r["label"] == r["human_label"] for r in records)
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    # Registered as deterministic under greedy decoding: computed once, recorded for every repeat.
    assert run["judges"][0]["deterministic"] is True and run["judges"][0]["options"]["seed"] == 0
    # A keyword nobody uses: every verdict negative, so the judge is wrong on every positive.
    recipe = _recipe(tmp_path, plugin, options={"keyword": "zebra"})
    assert main(["eval", str(recipe), "--out", str(tmp_path / "zebra")]) == 0
    assert {r["label"] for r in read_results(tmp_path / "zebra")} == {0}


def test_a_plugin_backend_checks_its_model_names_and_options(tmp_path, plugin):
    # Options are read when the recipe is parsed (by the loader, against the plugin's dataclass) ...
    recipe = _recipe(tmp_path, plugin, models=["gpt-4o"], options={"keywrd": "sure"})
    with pytest.raises(RunRecipeError) as caught:
        main(["eval", str(recipe), "--out", str(tmp_path / "run")])
    message = str(caught.value)
    known = "seed, deterministic, budget, render, keyword"
    assert f"field 'judges[0].options.keywrd': expected a known key ({known})" in message
    assert not (tmp_path / "run").exists()
    # ... model names when the plan is checked, still before any judge is built.
    recipe = _recipe(tmp_path, plugin, models=["gpt-4o"], options={"keyword": "sure"})
    with pytest.raises(RunRecipeError) as caught:
        main(["eval", str(recipe), "--out", str(tmp_path / "run")])
    assert "field 'judges[0].models[0]': expected a model name starting with kw-, got 'gpt-4o'" in str(caught.value)
    assert not (tmp_path / "run").exists()


def test_a_missing_plugin_module_is_named(tmp_path, plugin):
    recipe = _recipe(tmp_path, "jf_no_such_plugin")
    with pytest.raises(RunRecipeError) as caught:
        main(["eval", str(recipe), "--out", str(tmp_path / "run")])
    assert "field 'plugins[0]': expected an importable module" in str(caught.value)
    assert "jf_no_such_plugin" in str(caught.value)
