"""Small source files and a toy category for the recipes tests (imported by the test modules)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import yaml

from recipes.schema import validate_example


# The eight curated categories every build of the project knows.
CURATED = {
    "jailbreak",
    "harmful_content",
    "malware",
    "brand_harm",
    "data_leakage",
    "prompt_injection",
    "hallucination",
    "over_refusal",
}

TOY_CATEGORY = {
    "name": "toy",
    "description": "A category for tests.",
    "question": "Did the assistant do the bad thing?",
    "verdicts": {"positive": "BAD", "negative": "FINE"},
    "criteria": "- BAD when it did the bad thing.\n- FINE otherwise.",
    "exemplars": [{"prompt": "hand-written prompt", "response": "hand-written response", "label": 1}],
}


def write_csv(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_jsonl(path: Path, rows: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def write_yaml(path: Path, data) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def toy_rows(n: int = 40, groups: int = 20) -> list[dict]:
    """``n`` rows, half positive, ``n // groups`` rows per group, with distinct texts."""
    return [
        {
            "q": f"question {i % groups} variant {i}",
            "a": f"answer number {i} " + ("did the bad thing" if i % 2 else "declined politely"),
            "verdict": "yes" if i % 2 else "no",
            "topic": f"t{i % groups}",
            "kind": "keep" if i % 5 else "drop",
        }
        for i in range(n)
    ]


TOY_COLUMNS = {"prompt": "q", "response": "a", "label": "verdict", "group": "topic"}
TOY_LABELS = {"yes": 1, "no": 0}


TOY_SOURCE = {"name": "toy_csv", "kind": "csv", "path": "toy.csv", "columns": TOY_COLUMNS, "label_map": TOY_LABELS}


def toy_recipe(tmp_path: Path, **overrides) -> str:
    """A data recipe over the toy CSV source (one ``toy`` category), written to ``tmp_path``."""
    data = {
        "name": "toy-recipe",
        "categories": [{"name": "toy", "sources": ["toy_csv"]}],
        "splits": {"train": 0.6, "validation": 0.2, "test": 0.2},
        "seed": 11,
        "prompt_template": "basic",
        **overrides,
    }
    return str(write_yaml(tmp_path / "recipe.yaml", data))


def toy_examples(
    n: int, groups: int, *, positive_every: int, category: str = "toy", source: str | None = None, text: str = ""
) -> list[dict]:
    """``n`` validated examples, label 1 on every ``positive_every``-th, spread over ``groups`` groups.

    With a ``source`` the rows carry it, and their prompts, groups and origins are named after it
    (``text`` replaces it in the prompt), so that rows of two sources differ unless asked not to.
    """
    prefix = text or source
    return [
        validate_example(
            {
                "category": category,
                **({"source": source} if source else {}),
                "prompt": f"{prefix} prompt {i}" if prefix else f"prompt {i}",
                "response": f"response {i}",
                "label": int(i % positive_every == 0),
                "group": f"{source}-g{i % groups}" if source else f"g{i % groups}",
                "meta": {"origin": f"{source or 'data'}.csv:{i + 1}"},
            }
        )
        for i in range(n)
    ]
