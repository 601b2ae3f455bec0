"""Run recipes: the YAML that names an evaluation, parsed into typed dataclasses and checked up front.

A run recipe names the data, the categories, the judges (models x prompts), the repeats, the
second-level reviews, the tuned judges, the guard models and the reference judges::

    name: quickstart
    data: {recipe: recipes/data/quickstart.yaml}   # or {dir: built/data} or {files: {train: a.jsonl, test: b.jsonl}}
    split: test
    categories: [jailbreak, over_refusal]          # default: every category in the data
    limit: null                                    # examples per category (stratified subsample)
    repeats: 5                                     # repeat r uses seed + r
    seed: 0
    few_shot: 4                                    # exemplars for the few_shot prompt (train split only)
    judges:
      - {models: [smollm2-135m], prompts: [basic, criteria, cot, few_shot, score], backend: hf}
    second_level:                                  # one mapping or a list
      - {judge: smollm2-135m/basic, reviewer: {model: smollm2-135m}}   # judge: a first-level name, or best
    tuned: [runs/quickstart/judge]                 # folders holding judge.json
    guards: [{model: meta-llama/Llama-Guard-3-1B, kind: llama_guard}]
    reference: [tfidf, refusal_phrases]            # the honest floors (default: both)

Everything it names is checked before any work starts (unknown keys, models, prompts, categories,
tuned folders, guard kinds, data paths), and all problems are reported together, each as
``<file>: field '<name>': expected <what>, got <value>``. Relative paths are looked up from the
working directory, then the recipe's folder, then the project root.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from evaluation import registry
from evaluation.backends.options import REFERENCE_MODELS
from evaluation.guards.options import GUARD_KINDS
from evaluation.judges import BACKENDS, JudgeSpec, short_model_name
from recipes.categories import list_categories
from recipes.judge_card import JUDGE_CARD, JudgeCard
from recipes.prompts import FIRST_LEVEL, load_template
from recipes.schema import DataError
from recipes.splits import SPLITS


__all__ = [
    "GUARD_KINDS",
    "DataConfig",
    "GuardConfig",
    "Job",
    "JudgeEntry",
    "JudgeGroupConfig",
    "ReviewerConfig",
    "RunRecipe",
    "RunRecipeError",
    "SecondLevelConfig",
    "expand_judges",
    "load_run_recipe",
    "parse_run_recipe",
    "plan",
    "resolve_path",
]

BEST = "best"
_PROJECT_ROOT = Path(__file__).resolve().parents[1]


class RunRecipeError(DataError):
    """Every problem found in a run recipe, reported together."""

    def __init__(self, problems: list[DataError]):
        ValueError.__init__(self, "\n".join(str(p) for p in problems))
        first = problems[0]
        self.file, self.row, self.field, self.expected, self.got = (
            first.file,
            first.row,
            first.field,
            first.expected,
            first.got,
        )
        self.problems = problems


def resolve_path(path: str | Path, recipe_path: str | Path | None = None) -> Path:
    """``path`` as given if it exists, else next to the recipe, else under the project root."""
    candidate = Path(path).expanduser()
    if candidate.is_absolute() or candidate.exists():
        return candidate
    for base in ([Path(recipe_path).resolve().parent] if recipe_path else []) + [_PROJECT_ROOT]:
        if (base / candidate).exists():
            return base / candidate
    return candidate


@dataclass
class DataConfig:
    """Where the examples come from: exactly one of ``recipe``, ``dir`` or ``files``."""

    recipe: str | None = field(default=None, metadata={"help": "data recipe YAML, built in memory (deterministic)"})
    dir: str | None = field(default=None, metadata={"help": "a folder written by `judgeforge data build`"})
    files: dict[str, str] | None = field(
        default=None, metadata={"help": "JSON Lines of judgment examples per split, e.g. {train: a, test: b}"}
    )


@dataclass
class JudgeGroupConfig:
    """Prompted judges: every model with every prompt."""

    models: list[str] = field(metadata={"help": "model names: aliases, hub ids, local folders, served names"})
    prompts: list[str] = field(default_factory=lambda: ["basic"], metadata={"help": "first-level prompt names"})
    backend: str = field(default="hf", metadata={"help": f"one of {BACKENDS}"})
    temperature: float = field(default=0.0, metadata={"help": "0 = greedy; above 0 repeats sample anew"})
    max_new_tokens: int = field(default=128, metadata={"help": "generation budget"})
    batch_size: int = field(default=8, metadata={"help": "examples per judge call (one store write each)"})
    options: dict[str, Any] = field(default_factory=dict, metadata={"help": "backend options"})


@dataclass
class ReviewerConfig:
    """The second-level reviewer's model and backend."""

    model: str = field(metadata={"help": "reviewer model"})
    backend: str = field(default="hf", metadata={"help": f"one of {BACKENDS}"})
    temperature: float = field(default=0.0, metadata={"help": "0 = greedy"})
    max_new_tokens: int = field(default=128, metadata={"help": "generation budget"})
    batch_size: int = field(default=8, metadata={"help": "examples per call"})
    options: dict[str, Any] = field(default_factory=dict, metadata={"help": "backend options"})


@dataclass
class SecondLevelConfig:
    """A reviewer that re-judges one first-level judge's stored verdicts."""

    judge: str = field(metadata={"help": "name of a first-level judge (model/prompt), or `best`"})
    reviewer: ReviewerConfig = field(metadata={"help": "the reviewing model"})


@dataclass
class GuardConfig:
    """A published guard model (Llama Guard 3, ShieldGemma)."""

    model: str = field(metadata={"help": "hub id or local folder"})
    kind: str = field(metadata={"help": f"one of {GUARD_KINDS}"})
    batch_size: int = field(default=8, metadata={"help": "examples per call"})
    options: dict[str, Any] = field(default_factory=dict, metadata={"help": "backend options"})


@dataclass
class RunRecipe:
    """A parsed run recipe (see the module docstring for the YAML)."""

    name: str = field(metadata={"help": "run name, shown in reports"})
    data: DataConfig = field(metadata={"help": "where the examples come from"})
    split: str = field(default="test", metadata={"help": f"evaluated split, one of {SPLITS}"})
    categories: list[str] | None = field(default=None, metadata={"help": "categories (default: all in the data)"})
    limit: int | None = field(default=None, metadata={"help": "examples per category (stratified subsample)"})
    repeats: int = field(default=5, metadata={"help": "repeats of every judge (seed + r)"})
    seed: int = field(default=0, metadata={"help": "base seed of repeats, exemplars, subsamples, bootstrap"})
    few_shot: int = field(default=4, metadata={"help": "exemplars shown by the few_shot prompt (train split)"})
    judges: list[JudgeGroupConfig] = field(default_factory=list, metadata={"help": "prompted judge groups"})
    second_level: list[SecondLevelConfig] = field(default_factory=list, metadata={"help": "second-level reviews"})
    tuned: list[str] = field(default_factory=list, metadata={"help": "tuned-judge folders (judge.json)"})
    guards: list[GuardConfig] = field(default_factory=list, metadata={"help": "guard models"})
    reference: list[str] = field(
        default_factory=lambda: list(REFERENCE_MODELS), metadata={"help": "reference judges (the honest floors)"}
    )
    categories_dirs: list[str] = field(default_factory=list, metadata={"help": "extra category folders"})
    n_boot: int = field(default=1000, metadata={"help": "bootstrap resamples for confidence intervals"})
    plugins: list[str] = field(
        default_factory=list, metadata={"help": "modules imported first; they register their own backends"}
    )
    path: str = field(default="<memory>", metadata={"help": "file the recipe came from (not a YAML key)"})


@dataclass(frozen=True)
class JudgeEntry:
    """One judge of the run with what the report needs to place it."""

    spec: JudgeSpec
    kind: str  # a registered judge kind (evaluation.registry.judge_kinds)
    reviews: str = ""  # second level: the first-level judge it reviews (may be `best`)
    base_model: str = ""  # tuned: the model it was tuned from

    @property
    def name(self) -> str:
        """The judge's display name (its key in the store)."""
        return self.spec.name

    def deterministic(self) -> bool:
        """Whether every repeat gives the same result, so it is computed once and recorded per repeat.

        The backend's registration says (:func:`evaluation.registry.is_deterministic`): reference
        judges always, local backends at temperature 0, a hosted API never. ``options.deterministic``
        overrides.
        """
        return registry.is_deterministic(self.spec)


@dataclass(frozen=True)
class Job:
    """One unit of the plan: a judge on one category for one repeat."""

    judge: str
    kind: str
    model: str
    prompt: str
    backend: str
    category: str
    repeat: int


# ----------------------------------------------------------------------------------------------
# Parsing
# ----------------------------------------------------------------------------------------------


class _Problems:
    def __init__(self, file: str):
        self.file = file
        self.items: list[DataError] = []

    def add(self, where: str, expected: str, got: Any) -> None:
        self.items.append(DataError(self.file, None, where, expected, got))

    def raise_if_any(self) -> None:
        if self.items:
            raise RunRecipeError(self.items)


def _known_keys(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)} - {"path"}


def _mapping(value: Any, cls: type, where: str, problems: _Problems) -> dict[str, Any] | None:
    if not isinstance(value, dict):
        problems.add(where, f"a mapping with keys {sorted(_known_keys(cls))}", value)
        return None
    unknown = sorted(set(value) - _known_keys(cls))
    for key in unknown:
        problems.add(f"{where}.{key}" if where else key, f"one of {sorted(_known_keys(cls))}", key)
    return {k: v for k, v in value.items() if k not in unknown}


def _str_list(value: Any, where: str, problems: _Problems) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        problems.add(where, "a list of names", value)
        return []
    return list(value)


def _int(value: Any, where: str, problems: _Problems, minimum: int, allow_none: bool = False) -> Any:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        problems.add(where, f"an integer >= {minimum}" + (" or null" if allow_none else ""), value)
        return minimum
    return value


def _build(cls: type, data: dict[str, Any], where: str, problems: _Problems) -> Any:
    try:
        return cls(**data)
    except TypeError as error:  # a missing required key
        problems.add(where, f"the keys {sorted(_known_keys(cls))}", str(error).split(": ")[-1])
        return None


def _common(data: dict[str, Any], where: str, problems: _Problems) -> None:
    if "temperature" in data and (
        isinstance(data["temperature"], bool)
        or not isinstance(data["temperature"], int | float)
        or data["temperature"] < 0
    ):
        problems.add(f"{where}.temperature", "a number >= 0", data["temperature"])
    for key in ("max_new_tokens", "batch_size"):
        if key in data:
            data[key] = _int(data[key], f"{where}.{key}", problems, 1)
    if "options" in data and not isinstance(data["options"], dict):
        problems.add(f"{where}.options", "a mapping", data["options"])
        data["options"] = {}
    if "backend" in data and data["backend"] not in registry.backend_names():
        problems.add(f"{where}.backend", f"one of {registry.backend_names()}", data["backend"])


def parse_run_recipe(data: Any, path: str = "<memory>") -> RunRecipe:
    """Turn loaded YAML into a :class:`RunRecipe`, rejecting unknown keys and malformed values."""
    problems = _Problems(path)
    top = _mapping(data, RunRecipe, "<root>" if not isinstance(data, dict) else "", problems)
    if top is None:
        problems.raise_if_any()
        top = {}
    fields: dict[str, Any] = {"path": path}
    if not isinstance(top.get("name"), str) or not top.get("name", "").strip():
        problems.add("name", "a non-empty string", top.get("name"))
    fields["name"] = str(top.get("name") or "")
    data_cfg = _mapping(top.get("data"), DataConfig, "data", problems) if "data" in top else None
    if "data" not in top:
        problems.add("data", "one of {recipe: FILE}, {dir: FOLDER}, {files: {SPLIT: FILE}}", None)
    if data_cfg is not None:
        given = [k for k in ("recipe", "dir", "files") if data_cfg.get(k)]
        if len(given) != 1:
            problems.add("data", "exactly one of recipe, dir, files", data_cfg)
        if data_cfg.get("files") is not None and not (
            isinstance(data_cfg["files"], dict) and all(isinstance(v, str) for v in data_cfg["files"].values())
        ):
            problems.add("data.files", "a mapping {split: JSON Lines file}", data_cfg["files"])
        fields["data"] = DataConfig(**data_cfg)
    for key in ("split", "categories", "limit", "repeats", "seed", "few_shot", "n_boot"):
        if key in top:
            fields[key] = top[key]
    if fields.get("split", "test") not in SPLITS:
        problems.add("split", f"one of {SPLITS}", fields["split"])
    if "categories" in fields and fields["categories"] is not None:
        fields["categories"] = _str_list(fields["categories"], "categories", problems)
    fields["limit"] = _int(fields.get("limit"), "limit", problems, 1, allow_none=True)
    fields["repeats"] = _int(fields.get("repeats", 5), "repeats", problems, 1)
    fields["seed"] = _int(fields.get("seed", 0), "seed", problems, 0)
    fields["few_shot"] = _int(fields.get("few_shot", 4), "few_shot", problems, 0)
    fields["n_boot"] = _int(fields.get("n_boot", 1000), "n_boot", problems, 0)
    fields["plugins"] = _str_list(top.get("plugins") or [], "plugins", problems)
    _load_plugins(fields["plugins"], path, problems)  # before the backends they register are checked
    fields["judges"] = []
    for i, item in enumerate(_as_list(top.get("judges"))):
        where = f"judges[{i}]"
        group = _mapping(item, JudgeGroupConfig, where, problems)
        if group is None:
            continue
        group["models"] = _str_list(group.get("models"), f"{where}.models", problems)
        if "prompts" in group:
            group["prompts"] = _str_list(group["prompts"], f"{where}.prompts", problems)
        _common(group, where, problems)
        fields["judges"].append(_build(JudgeGroupConfig, group, where, problems))
    fields["second_level"] = []
    for i, item in enumerate(_as_list(top.get("second_level"))):
        where = f"second_level[{i}]"
        review = _mapping(item, SecondLevelConfig, where, problems)
        if review is None:
            continue
        if not isinstance(review.get("judge"), str):
            problems.add(
                f"{where}.judge", "the name of a first-level judge (model/prompt) or `best`", review.get("judge")
            )
        reviewer = _mapping(review.get("reviewer"), ReviewerConfig, f"{where}.reviewer", problems)
        if reviewer is not None:
            _common(reviewer, f"{where}.reviewer", problems)
            review["reviewer"] = _build(ReviewerConfig, reviewer, f"{where}.reviewer", problems)
        fields["second_level"].append(_build(SecondLevelConfig, review, where, problems))
    fields["tuned"] = _str_list(top.get("tuned") or [], "tuned", problems)
    fields["guards"] = []
    for i, item in enumerate(_as_list(top.get("guards"))):
        guard = _mapping(item, GuardConfig, f"guards[{i}]", problems)
        if guard is not None:
            _common(guard, f"guards[{i}]", problems)
            fields["guards"].append(_build(GuardConfig, guard, f"guards[{i}]", problems))
    if "reference" in top:
        fields["reference"] = _str_list(top["reference"] or [], "reference", problems) if top["reference"] else []
    fields["categories_dirs"] = _str_list(top.get("categories_dirs") or [], "categories_dirs", problems)
    problems.raise_if_any()
    return RunRecipe(**fields)


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def load_run_recipe(path: str | Path) -> RunRecipe:
    """Read and parse a run recipe file (``yaml.safe_load`` only)."""
    file = resolve_path(path)
    if not file.is_file():
        raise DataError(str(path), None, "recipe", "an existing run recipe YAML file", str(path))
    with open(file, encoding="utf-8") as handle:
        return parse_run_recipe(yaml.safe_load(handle), str(file))


# ----------------------------------------------------------------------------------------------
# Scaling down and expanding
# ----------------------------------------------------------------------------------------------


def scale_down(
    recipe: RunRecipe,
    *,
    limit: int | None = None,
    models: list[str] | None = None,
    max_new_tokens: int | None = None,
) -> RunRecipe:
    """Apply ``--limit``, ``--models`` and ``--max-new-tokens``.

    ``models`` turns the recipe into a local run: every prompted judge group judges with these
    models on the ``hf`` backend (its prompts and settings kept, backend options dropped since they
    belonged to the old backend), each reviewer becomes the first of them (and a review of a named
    judge is re-pointed at the same prompt of that model), and guard models are dropped (they are
    fixed models, not judge models one can swap). Tuned and reference judges stay.

    ``max_new_tokens`` caps the generation budget of every judge group and reviewer: a recipe
    written for large models lets ``cot`` reason for hundreds of tokens, which a small stand-in
    model on a CPU spends mostly on rambling.
    """
    changes: dict[str, Any] = {}
    if limit is not None:
        changes["limit"] = limit
    if models:
        prompts: list[str] = []
        for group in recipe.judges:
            prompts += [p for p in group.prompts if p not in prompts]
        base = recipe.judges[0] if recipe.judges else JudgeGroupConfig(models=list(models))
        changes["judges"] = [
            JudgeGroupConfig(
                models=list(models),
                prompts=prompts or ["basic"],
                backend="hf",
                temperature=base.temperature,
                max_new_tokens=base.max_new_tokens,
                batch_size=base.batch_size,
            )
        ]
        reviews = []
        for review in recipe.second_level:
            judge = review.judge
            if judge != BEST:
                judge = f"{short_model_name(models[0])}/{judge.rsplit('/', 1)[-1]}"
            reviewer = dataclasses.replace(review.reviewer, model=models[0], backend="hf", options={})
            reviews.append(SecondLevelConfig(judge=judge, reviewer=reviewer))
        changes["second_level"] = reviews
        changes["guards"] = []
    if max_new_tokens is not None:
        if max_new_tokens < 1:
            raise DataError("<command line>", None, "--max-new-tokens", "a positive integer", max_new_tokens)
        judges = changes.get("judges", recipe.judges)
        changes["judges"] = [
            dataclasses.replace(g, max_new_tokens=min(g.max_new_tokens, max_new_tokens)) for g in judges
        ]
        reviews = changes.get("second_level", recipe.second_level)
        capped = [min(r.reviewer.max_new_tokens, max_new_tokens) for r in reviews]
        changes["second_level"] = [
            dataclasses.replace(r, reviewer=dataclasses.replace(r.reviewer, max_new_tokens=n))
            for r, n in zip(reviews, capped)
        ]
    return dataclasses.replace(recipe, **changes) if changes else recipe


def reviewer_name(first: str, reviewer: ReviewerConfig) -> str:
    """The second-level judge's name: ``<first judge>+review:<reviewer model>``."""
    return f"{first}+review:{short_model_name(reviewer.model)}"


def expand_judges(recipe: RunRecipe) -> list[JudgeEntry]:
    """Every judge of the run, in run order: reference, prompted, tuned, guards, then second level."""
    reference, tuned, guards = (registry.judge_kind(k) for k in (registry.REFERENCE, registry.TUNED, registry.GUARD))
    entries = [
        JudgeEntry(JudgeSpec(ref, prompt="-", backend=reference.backend, name=reference.name_for(ref)), reference.name)
        for ref in recipe.reference
    ]
    for group in recipe.judges:
        for model in group.models:
            for prompt in group.prompts:
                spec = JudgeSpec(
                    model=model,
                    prompt=prompt,
                    backend=group.backend,
                    temperature=float(group.temperature),
                    max_new_tokens=group.max_new_tokens,
                    batch_size=group.batch_size,
                    options=dict(group.options),
                )
                entries.append(JudgeEntry(spec, registry.PROMPTED))
    for folder in recipe.tuned:
        path = resolve_path(folder, recipe.path)
        card = JudgeCard.read(path) if (path / JUDGE_CARD).is_file() else None
        prompt = card.prompt_template if card else "basic"
        spec = JudgeSpec(model=str(path), prompt=prompt, backend=tuned.backend, name=tuned.name_for(folder))
        entries.append(JudgeEntry(spec, tuned.name, base_model=card.base_model if card else ""))
    for guard in recipe.guards:
        spec = JudgeSpec(
            model=guard.model,
            prompt=guard.kind,
            backend=guards.backend,
            batch_size=guard.batch_size,
            options=_guard_options(guard),
        )
        entries.append(JudgeEntry(spec, guards.name))
    for review in recipe.second_level:
        reviewer = review.reviewer
        spec = JudgeSpec(
            model=reviewer.model,
            prompt="second_level",
            backend=reviewer.backend,
            name=reviewer_name(review.judge, reviewer),
            temperature=float(reviewer.temperature),
            max_new_tokens=reviewer.max_new_tokens,
            batch_size=reviewer.batch_size,
            options=dict(reviewer.options),
        )
        entries.append(JudgeEntry(spec, registry.SECOND_LEVEL, reviews=review.judge))
    return entries


# ----------------------------------------------------------------------------------------------
# Checking names
# ----------------------------------------------------------------------------------------------


def _guard_options(guard: GuardConfig) -> dict[str, Any]:
    return {**guard.options, "kind": guard.kind}


def _load_plugins(modules: list[str], file: str, problems: _Problems) -> None:
    try:
        registry.load_plugins(modules, file)
    except DataError as error:
        problems.items.append(error)


def _check_judge(
    backend: str, models: dict[str, str], options: dict[str, Any], where: str, problems: _Problems
) -> None:
    """A judge's backend, its model names (``{key path: model}``) and its options, as the registry checks them."""
    try:
        entry = registry.backend(backend, problems.file)
    except DataError:
        problems.add(f"{where}.backend", f"one of {registry.backend_names()}", backend)
        return
    for model_where, model in models.items():
        problem = entry.model_problem(model)
        if problem:
            problems.add(model_where, problem, model)
    try:
        registry.parse_options(backend, options, f"{problems.file}: {where}")
    except DataError as error:
        problems.items.append(error)


def check_recipe(recipe: RunRecipe, data_categories: list[str] | None = None) -> None:
    """Check every name the recipe uses; raise one :class:`RunRecipeError` listing all problems.

    Args:
        recipe: the parsed recipe.
        data_categories: categories present in the data, when already known.
    """
    problems = _Problems(recipe.path)
    _load_plugins(recipe.plugins, recipe.path, problems)
    known = list_categories(recipe.categories_dirs)
    for i, name in enumerate(recipe.categories or []):
        if name not in known:
            problems.add(f"categories[{i}]", f"one of: {', '.join(known)}", name)
        elif data_categories is not None and name not in data_categories:
            problems.add(f"categories[{i}]", f"a category present in the data ({', '.join(data_categories)})", name)
    data = recipe.data
    for key in ("recipe", "dir"):
        value = getattr(data, key)
        if value and not resolve_path(value, recipe.path).exists():
            problems.add(f"data.{key}", "an existing path", value)
    for split, file in (data.files or {}).items():
        if split not in SPLITS:
            problems.add(f"data.files.{split}", f"a split name, one of {SPLITS}", split)
        if not resolve_path(file, recipe.path).is_file():
            problems.add(f"data.files.{split}", "an existing JSON Lines file", file)
    if data.files is not None and recipe.split not in data.files:
        problems.add("data.files", f"a file for the evaluated split '{recipe.split}'", sorted(data.files))
    for i, group in enumerate(recipe.judges):
        if not group.models:
            problems.add(f"judges[{i}].models", "at least one model", group.models)
        models = {f"judges[{i}].models[{j}]": model for j, model in enumerate(group.models)}
        _check_judge(group.backend, models, group.options, f"judges[{i}]", problems)
        for j, prompt in enumerate(group.prompts):
            if prompt not in FIRST_LEVEL:
                try:
                    template = load_template(prompt)
                except DataError:
                    template = None
                if template is None or template.answer == "review":
                    problems.add(f"judges[{i}].prompts[{j}]", f"one of {FIRST_LEVEL} or a template file", prompt)
    for i, folder in enumerate(recipe.tuned):
        path = resolve_path(folder, recipe.path)
        try:
            card = JudgeCard.read(path)
        except DataError as error:
            problems.add(f"tuned[{i}]", f"a tuned-judge folder holding {JUDGE_CARD}", f"{folder} ({error})")
            continue
        if card.prompt_template not in FIRST_LEVEL:
            problems.add(f"tuned[{i}].prompt_template", f"one of {FIRST_LEVEL}", card.prompt_template)
    guards = registry.judge_kind(registry.GUARD)
    for i, guard in enumerate(recipe.guards):
        options = _guard_options(guard) if guard.kind in GUARD_KINDS else guard.options
        if guard.kind not in GUARD_KINDS:
            problems.add(f"guards[{i}].kind", f"one of {GUARD_KINDS}", guard.kind)
        _check_judge(guards.backend, {f"guards[{i}].model": guard.model}, options, f"guards[{i}]", problems)
    reference = registry.judge_kind(registry.REFERENCE)
    models = {f"reference[{i}]": ref for i, ref in enumerate(recipe.reference)}
    _check_judge(reference.backend, models, {}, "reference", problems)
    entries = expand_judges(recipe) if not problems.items else []
    names = [e.name for e in entries]
    first_level = [e.name for e in entries if e.kind == registry.PROMPTED]
    for name in sorted({n for n in names if names.count(n) > 1}):
        problems.add("judges", "each judge once (model/prompt pairs must be unique)", name)
    for i, review in enumerate(recipe.second_level):
        if entries and review.judge != BEST and review.judge not in first_level:
            problems.add(
                f"second_level[{i}].judge", f"`best` or a prompted judge: {', '.join(first_level)}", review.judge
            )
        if review.judge == BEST and entries and not first_level:
            problems.add(f"second_level[{i}].judge", "prompted judges to choose the best from", review.judge)
        reviewer = review.reviewer
        models = {f"second_level[{i}].reviewer.model": reviewer.model}
        _check_judge(reviewer.backend, models, reviewer.options, f"second_level[{i}].reviewer", problems)
    problems.raise_if_any()


def _data_categories(recipe: RunRecipe) -> list[str]:
    """The categories a recipe's data holds, read from its data recipe or data card (no examples loaded)."""
    from recipes.builders import DataCard, load_data_recipe

    if recipe.data.recipe:
        return [c.name for c in load_data_recipe(resolve_path(recipe.data.recipe, recipe.path)).categories]
    if recipe.data.dir:
        return sorted(DataCard.read(resolve_path(recipe.data.dir, recipe.path)).counts)
    return []


def plan(recipe: RunRecipe, categories: list[str] | None = None) -> list[Job]:
    """Every job of the run (judge x category x repeat), checking the recipe first.

    Args:
        recipe: the run recipe.
        categories: the categories to plan for (default: the recipe's, else those its data recipe or
            data card names; ``["*"]`` for data files, whose categories are known only once read).
    """
    check_recipe(recipe)
    cats = categories or recipe.categories or _data_categories(recipe) or ["*"]
    return [
        Job(e.name, e.kind, e.spec.model, e.spec.prompt, e.spec.backend, category, repeat)
        for e in expand_judges(recipe)
        for category in cats
        for repeat in range(recipe.repeats)
    ]
