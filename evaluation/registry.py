"""The one registry of backends and judge kinds: everything the rest of evaluation asks of them.

A **backend** (``hf``, ``openai``, ``vllm``, ``guard``, ``reference``, ``fake``, or one of a user's
plugins) registers once with its builder, whether it loads weights here, whether it is deterministic
under greedy decoding, its typed options dataclass, how to check a model name, and whether it takes
the run's seed and the data's field budget. A **judge kind** (``prompted``, ``tuned``, ``guard``,
``reference``, ``second_level``) registers with what the planner and the report ask: its default
backend, its place in the report, whether it is a floor, its display-name rule, whether it sees the
data's field budget. Nobody else dispatches on these names.

Builders are named by a dotted path (``module:attribute``) and imported only when a judge is built,
so importing the registry loads no torch, and vLLM stays optional. A plugin module, named in a run
recipe's ``plugins`` key, adds a backend by calling :func:`register_backend` when imported::

    register_backend("echo", "my_pkg.echo:EchoJudge", options=EchoOptions, deterministic="greedy")
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from evaluation.backends.options import (
    REFERENCE_MODELS,
    CommonOptions,
    FakeOptions,
    HFOptions,
    OpenAIOptions,
    ReferenceOptions,
    VLLMOptions,
    options_from,
)
from evaluation.guards.options import GuardOptions, guess_kind
from recipes.models import ALIASES
from recipes.schema import DataError


__all__ = [
    "DEFAULT_BACKEND",
    "GUARD",
    "PROMPTED",
    "REFERENCE",
    "SECOND_LEVEL",
    "TUNED",
    "Backend",
    "JudgeKind",
    "backend",
    "backend_for_model",
    "backend_names",
    "build",
    "floor_kind",
    "is_deterministic",
    "judge_kind",
    "judge_kinds",
    "load_plugins",
    "parse_options",
    "register_backend",
    "register_kind",
    "report_order",
]

Determinism = Literal["always", "greedy", "never"]

PROMPTED, TUNED, GUARD, REFERENCE, SECOND_LEVEL = "prompted", "tuned", "guard", "reference", "second_level"
DEFAULT_BACKEND = "hf"  # what a spec or recipe that names no backend gets
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class Backend:
    """One backend and what the rest of evaluation asks of it.

    Attributes:
        name: the ``backend:`` value in recipes and specs.
        builder: ``module:attribute`` (imported when a judge is built) or a callable; called as
            ``builder(spec)``, or ``builder(spec, train_examples)`` when ``uses_train_split``.
        options: the frozen dataclass its ``options`` mapping is read into.
        local: loads weights in this process (its model names are checked as local models).
        deterministic: ``always`` (any temperature), ``greedy`` (at temperature 0) or ``never``.
        check_model: returns what a model name should have been (a problem), or None when it is fine.
        takes_seed: the run sets ``options.seed`` to the recipe's seed.
        takes_budget: the run passes the data's field budget (``options.budget``) to judge kinds that see it.
        uses_prompt: the spec's prompt template matters (guards and reference judges have their own).
        uses_train_split: the builder fits on the train split.
        recognises: options a model name implies when the name alone says this backend serves it
            (``judgeforge judge --judge meta-llama/Llama-Guard-3-1B``), else None.
    """

    name: str
    builder: str | Callable[..., Any]
    options: type[CommonOptions] = CommonOptions
    local: bool = False
    deterministic: Determinism = "never"
    check_model: Callable[[str], str | None] | None = None
    takes_seed: bool = True
    takes_budget: bool = True
    uses_prompt: bool = True
    uses_train_split: bool = False
    recognises: Callable[[str], dict[str, Any] | None] | None = None

    def factory(self) -> Callable[..., Any]:
        """The builder, imported now."""
        if callable(self.builder):
            return self.builder
        module, _, attribute = self.builder.partition(":")
        return getattr(importlib.import_module(module), attribute)

    def model_problem(self, model: str) -> str | None:
        """What ``model`` should have been for this backend, or None when it is acceptable."""
        return self.check_model(model) if self.check_model else None


@dataclass(frozen=True)
class JudgeKind:
    """One kind of judge in a run and what the planner and the report ask of it.

    Attributes:
        name: the ``kind`` stored with every record.
        backend: the backend its judges use unless the recipe names one.
        report_order: its place in the report's tables (lower first).
        floor: a floor every judge should beat (marked in the report).
        display_name: the judge's name from the model's short name (``{short}``; ``{model}`` is the
            model as given); empty: the spec's own default (``<model short name>/<prompt>``).
        sees_data_budget: its judges see the data's field budget (what tuned judges were trained on).
    """

    name: str
    backend: str
    report_order: int
    floor: bool = False
    display_name: str = ""
    sees_data_budget: bool = False

    def name_for(self, model: str) -> str:
        """The display name of a judge of this kind on ``model`` ('' when the spec's default applies)."""
        short = Path(model.rstrip("/")).name or model
        return self.display_name.format(short=short, model=model) if self.display_name else ""


_BACKENDS: dict[str, Backend] = {}
_KINDS: dict[str, JudgeKind] = {}


def register_backend(name: str, builder: str | Callable[..., Any], **settings: Any) -> Backend:
    """Register a backend (see :class:`Backend` for ``settings``); a name is registered once.

    Raises:
        ValueError: when ``name`` is already registered with other settings.
    """
    entry = Backend(name=name, builder=builder, **settings)
    if name in _BACKENDS and _BACKENDS[name] != entry:
        raise ValueError(f"backend {name!r} is already registered (by {_BACKENDS[name].builder!r})")
    _BACKENDS[name] = entry
    return entry


def register_kind(name: str, **settings: Any) -> JudgeKind:
    """Register a judge kind (see :class:`JudgeKind` for ``settings``)."""
    _KINDS[name] = entry = JudgeKind(name=name, **settings)
    return entry


def backend_names() -> tuple[str, ...]:
    """Every registered backend, built-ins first."""
    return tuple(_BACKENDS)


def backend(name: str, where: str = "<judge spec>") -> Backend:
    """The registered backend ``name``.

    Raises:
        DataError: for an unknown name, listing the known ones.
    """
    if name not in _BACKENDS:
        raise DataError(where, None, "backend", f"one of {', '.join(_BACKENDS)} (or a plugin's backend)", name)
    return _BACKENDS[name]


def judge_kind(name: str) -> JudgeKind:
    """The registered judge kind ``name`` (``KeyError`` names the known ones)."""
    if name not in _KINDS:
        raise KeyError(f"unknown judge kind {name!r}; known: {', '.join(_KINDS)}")
    return _KINDS[name]


def judge_kinds() -> tuple[JudgeKind, ...]:
    """Every judge kind, in report order."""
    return tuple(sorted(_KINDS.values(), key=lambda k: k.report_order))


def report_order() -> dict[str, int]:
    """``{kind: place}`` for sorting the report's rows."""
    return {k.name: k.report_order for k in judge_kinds()}


def floor_kind() -> str:
    """The kind whose judges are the report's floors."""
    return next(k.name for k in judge_kinds() if k.floor)


def parse_options(backend_name: str, options: Mapping[str, Any] | None, where: str) -> CommonOptions:
    """A spec's ``options`` read into its backend's dataclass (unknown keys refused, with the known ones).

    Args:
        backend_name: a registered backend.
        options: the mapping from the recipe or spec.
        where: what an error names, e.g. ``recipes/runs/x.yaml: judges[2]``.

    Raises:
        DataError: ``<where>.options.<key>: unknown key; known: a, b, c``, a malformed value, or an
            unknown backend.
    """
    return options_from(backend(backend_name, where).options, options, where)


def is_deterministic(spec: Any) -> bool:
    """Whether every repeat of ``spec`` gives the same result (then it is computed once per example).

    ``options.deterministic`` overrides; otherwise the backend says: reference judges always are,
    local backends are at temperature 0, and a hosted API is not assumed to be.
    """
    override = parse_options(spec.backend, spec.options, f"<judge spec {spec.name}>").deterministic
    if override is not None:
        return override
    rule = backend(spec.backend).deterministic
    return rule == "always" or (rule == "greedy" and spec.temperature == 0)


def build(spec: Any, train_examples: Sequence[dict] | None = None) -> Any:
    """Build the judge ``spec`` names: its options are checked first, then its backend is imported.

    Raises:
        DataError: for an unknown backend or option (before any model loads).
        ImportError: when an optional extra (vLLM) is missing, with the pip line.
    """
    entry = backend(spec.backend)
    parse_options(spec.backend, spec.options, "<judge spec>")
    factory = entry.factory()
    return factory(spec, list(train_examples or [])) if entry.uses_train_split else factory(spec)


def backend_for_model(model: str, default: str) -> tuple[str, dict[str, Any]]:
    """The backend a bare model name implies, with the options the name implies; ``default`` otherwise."""
    for entry in _BACKENDS.values():
        options = entry.recognises(model) if entry.recognises else None
        if options is not None:
            return entry.name, options
    return default, {}


def load_plugins(modules: Sequence[str], where: str = "<run recipe>") -> None:
    """Import plugin modules (each registers its backends when imported).

    Raises:
        DataError: naming the module that cannot be imported, and why.
    """
    for i, module in enumerate(modules):
        try:
            importlib.import_module(module)
        except ImportError as error:
            raise DataError(where, None, f"plugins[{i}]", "an importable module", f"{module} ({error})") from error


# ----------------------------------------------------------------------------------------------
# Built-ins
# ----------------------------------------------------------------------------------------------


def local_model_problem(model: str) -> str | None:
    """None for an alias, an existing folder or a hub id (``org/name``); else what was expected."""
    if model in ALIASES or Path(model).expanduser().is_dir():
        return None
    if _HUB_ID.match(model) and not model.startswith((".", "/")) and not Path(model).parent.exists():
        return None  # a hub id: fetched (or found in the cache) when the judge is built
    return f"a model alias ({', '.join(ALIASES)}), an existing folder or a hub id org/name"


def _reference_problem(model: str) -> str | None:
    return None if model in REFERENCE_MODELS else f"one of {REFERENCE_MODELS}"


def _guard_options(model: str) -> dict[str, Any] | None:
    try:
        return {"kind": guess_kind(model)}
    except ValueError:
        return None


_LOCAL = {"local": True, "deterministic": "greedy", "check_model": local_model_problem}

register_backend("hf", "evaluation.backends.hf:HFJudge", options=HFOptions, **_LOCAL)
register_backend("openai", "evaluation.backends.openai_compat:OpenAIJudge", options=OpenAIOptions)
register_backend("vllm", "evaluation.backends.vllm:VLLMJudge", options=VLLMOptions, **_LOCAL)
register_backend(
    "guard",
    "evaluation.guards.judge:GuardJudge",
    options=GuardOptions,
    uses_prompt=False,
    recognises=_guard_options,
    **_LOCAL,
)
register_backend(
    "reference",
    "evaluation.reference:build_reference_judge",
    options=ReferenceOptions,
    deterministic="always",
    check_model=_reference_problem,
    takes_seed=False,
    takes_budget=False,
    uses_prompt=False,
    uses_train_split=True,
)
register_backend("fake", "evaluation.backends.fake:FakeJudge", options=FakeOptions)

register_kind(TUNED, backend=DEFAULT_BACKEND, report_order=0, display_name="tuned:{short}")
register_kind(SECOND_LEVEL, backend=DEFAULT_BACKEND, report_order=1, sees_data_budget=True)
register_kind(PROMPTED, backend=DEFAULT_BACKEND, report_order=2, sees_data_budget=True)
register_kind(GUARD, backend="guard", report_order=3)
register_kind(REFERENCE, backend="reference", report_order=4, floor=True, display_name="reference/{model}")
