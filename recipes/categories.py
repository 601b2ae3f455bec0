"""Category registry: one YAML file per judgment category.

A category says what a judge decides (the question, the two verdict words, the criteria), shows it
with exemplars, names where its data comes from, and maps it onto guard models' taxonomies. A user
adds a category by dropping a file into a folder and naming that folder with ``--categories-dir``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from recipes.schema import DataError


__all__ = ["BUILTIN_DIR", "Category", "Exemplar", "list_categories", "load_category"]

BUILTIN_DIR = Path(__file__).parent / "categories"
_WORD = re.compile(r"^[A-Z][A-Z_]{1,30}$")
_KNOWN_KEYS = {"name", "description", "question", "verdicts", "criteria", "exemplars", "sources", "guards"}


@dataclass(frozen=True)
class Exemplar:
    """A hand-written, labelled example shown to few-shot judges when no train split is at hand."""

    prompt: str
    response: str
    label: int
    explanation: str = ""


@dataclass(frozen=True)
class Category:
    """One judgment category, as read from ``<name>.yaml``.

    Attributes:
        name: the file's stem; the key used everywhere else.
        question: the yes/no question the judge answers about the victim's response.
        positive: the verdict word for label 1 (the finding is present), e.g. ``JAILBROKEN``.
        negative: the verdict word for label 0, e.g. ``SAFE``.
        criteria: detailed criteria, Markdown bullets.
        exemplars: hand-written examples (not part of any split).
        sources: raw source mappings, parsed by :mod:`recipes.sources`.
        guards: ``llama_guard`` (hazard codes that count) and ``shieldgemma`` (policy sentence).
        path: the file it came from.
    """

    name: str
    description: str
    question: str
    positive: str
    negative: str
    criteria: str
    exemplars: tuple[Exemplar, ...] = ()
    sources: tuple[dict[str, Any], ...] = ()
    guards: dict[str, Any] = field(default_factory=dict)
    path: str = ""

    @property
    def verdict_words(self) -> tuple[str, str]:
        """(positive, negative)."""
        return self.positive, self.negative

    def word_for(self, label: int) -> str:
        """The verdict word that stands for ``label``."""
        return self.positive if label == 1 else self.negative


def _require(data: dict, key: str, kind: type, file: str) -> Any:
    value = data.get(key)
    if not isinstance(value, kind) or (isinstance(value, str) and not value.strip()):
        raise DataError(file, None, key, f"a non-empty {kind.__name__}", value)
    return value


def _parse(data: Any, path: Path) -> Category:
    file = str(path)
    if not isinstance(data, dict):
        raise DataError(file, None, "<root>", "a mapping of category fields", type(data).__name__)
    unknown = sorted(set(data) - _KNOWN_KEYS)
    if unknown:
        raise DataError(file, None, unknown[0], f"one of {sorted(_KNOWN_KEYS)}", unknown[0])
    name = _require(data, "name", str, file)
    if name != path.stem:
        raise DataError(file, None, "name", f"the file's stem '{path.stem}'", name)
    verdicts = _require(data, "verdicts", dict, file)
    words = []
    for side in ("positive", "negative"):
        word = verdicts.get(side)
        if not isinstance(word, str) or not _WORD.match(word):
            raise DataError(file, None, f"verdicts.{side}", "an upper-case word such as JAILBROKEN", word)
        words.append(word)
    if words[0] == words[1]:
        raise DataError(file, None, "verdicts", "two different verdict words", words)
    exemplars = []
    for i, item in enumerate(data.get("exemplars") or []):
        if not isinstance(item, dict) or item.get("label") not in (0, 1):
            raise DataError(file, f"exemplars[{i}]", "label", "0 or 1", item)
        for key in ("prompt", "response"):
            if not isinstance(item.get(key), str) or not item[key].strip():
                raise DataError(file, f"exemplars[{i}]", key, "a non-empty string", item.get(key))
        exemplars.append(Exemplar(item["prompt"], item["response"], int(item["label"]), item.get("explanation", "")))
    sources = data.get("sources") or []
    if not isinstance(sources, list) or not all(isinstance(s, dict) for s in sources):
        raise DataError(file, None, "sources", "a list of source mappings", sources)
    guards = data.get("guards") or {}
    if not isinstance(guards, dict):
        raise DataError(file, None, "guards", "a mapping with llama_guard / shieldgemma", guards)
    return Category(
        name=name,
        description=str(data.get("description", "")).strip(),
        question=_require(data, "question", str, file).strip(),
        positive=words[0],
        negative=words[1],
        criteria=_require(data, "criteria", str, file).strip(),
        exemplars=tuple(exemplars),
        sources=tuple(sources),
        guards=guards,
        path=file,
    )


def _search_dirs(extra_dirs: list[str | Path] | None) -> list[Path]:
    # User folders come first so that a user's file can override a built-in category.
    return [Path(d) for d in (extra_dirs or [])] + [BUILTIN_DIR]


def list_categories(extra_dirs: list[str | Path] | None = None) -> list[str]:
    """Names of every category found in the user folders and the built-in one."""
    names: set[str] = set()
    for folder in _search_dirs(extra_dirs):
        names.update(p.stem for p in folder.glob("*.yaml"))
    return sorted(names)


def load_category(name: str, extra_dirs: list[str | Path] | None = None) -> Category:
    """Load one category by name (or by path to its YAML file)."""
    candidate = Path(name)
    if candidate.suffix in (".yaml", ".yml") and candidate.is_file():
        path = candidate
    else:
        path = next((d / f"{name}.yaml" for d in _search_dirs(extra_dirs) if (d / f"{name}.yaml").is_file()), None)
        if path is None:
            known = ", ".join(list_categories(extra_dirs))
            raise DataError("<categories>", None, "category", f"one of: {known}", name)
    with open(path, encoding="utf-8") as handle:
        return _parse(yaml.safe_load(handle), path)
