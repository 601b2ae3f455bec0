"""The one recipe loader: typed fields, every problem collected with its key path, the options hook, describe."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import pytest

from recipes.loader import Problems, RecipeError, at_least, describe, load, non_empty, parse_into
from recipes.schema import DataError


@dataclass
class Inner:
    model: str = field(metadata={"help": "which model"})
    backend: str = field(default="a", metadata={"help": "the backend", "choices": ("a", "b")})
    batch_size: int = field(default=8, metadata={"help": "examples per call", **at_least(1)})
    options: dict[str, Any] = field(
        default_factory=dict, metadata={"help": "backend options", "options_of": "backend"}
    )


@dataclass
class Outer:
    name: str = field(metadata={"help": "a name", **non_empty()})
    mode: Literal["fast", "slow"] = field(default="fast", metadata={"help": "how"})
    limit: int | None = field(default=None, metadata={"help": "at most", **at_least(1)})
    ratio: float = field(default=0.5, metadata={"help": "a share"})
    tags: list[str] = field(default_factory=list, metadata={"help": "labels"})
    weights: dict[str, float] = field(default_factory=dict, metadata={"help": "per tag"})
    inner: list[Inner] = field(default_factory=list, metadata={"help": "the inner ones"})
    path: str = field(default="<memory>", metadata={"yaml": False})


@dataclass
class OptionsA:
    prefix_cache: bool = field(default=False, metadata={"help": "share prompt prefixes"})


@dataclass
class OptionsB:
    url: str = field(metadata={"help": "server"})


def _options(backend: str, options: Any, where: str) -> Any:
    """A resolver like the registry's: the options dataclass depends on the backend."""
    return load({"a": OptionsA, "b": OptionsB}[backend], options, "<options>")


def test_builds_the_typed_object_with_defaults_and_single_items_as_lists():
    data = {"name": "x", "ratio": 1, "tags": "one", "weights": {"t": 2}, "inner": {"model": "m"}, "limit": None}
    built = load(Outer, data, "x.yaml")
    assert built == Outer(name="x", ratio=1.0, tags=["one"], weights={"t": 2.0}, inner=[Inner(model="m")])
    assert isinstance(built.ratio, float) and built.path == "<memory>"


def test_every_problem_is_collected_with_its_file_and_key_path():
    data = {
        "name": " ",
        "mode": "medium",
        "limit": 0,
        "ratio": True,
        "tags": ["ok", 3],
        "weights": {"t": "heavy"},
        "inner": [{"model": "m"}, {"model": "m", "backend": "c", "batch_sise": 2}, {"backend": "b"}],
        "extra": 1,
    }
    with pytest.raises(RecipeError) as caught:
        load(Outer, data, "recipes/runs/x.yaml")
    lines = str(caught.value).splitlines()
    expected = [
        "field 'extra': expected one of the known keys (name, mode, limit, ratio, tags, weights, inner)",
        "field 'name': expected a non-empty string, got ' '",
        "field 'mode': expected one of ['fast', 'slow'], got 'medium'",
        "field 'limit': expected an integer >= 1 or null, got 0",
        "field 'ratio': expected a number, got True",
        "field 'tags[1]': expected a string, got 3",
        "field 'weights.t': expected a number, got 'heavy'",
        "field 'inner[1].batch_sise': expected one of the known keys (model, backend, batch_size, options; "
        "did you mean 'batch_size'?)",
        "field 'inner[1].backend': expected one of ['a', 'b'], got 'c'",
        "field 'inner[2].model': expected this required key (which model), got None",
    ]
    assert len(lines) == len(expected) == len(caught.value.problems)
    for line, want in zip(lines, expected):
        assert line.startswith(f"recipes/runs/x.yaml: {want}"), (line, want)
    assert isinstance(caught.value, DataError) and caught.value.field == "extra"


def test_options_schema_follows_the_sibling_backend_through_the_resolver():
    data = {"name": "x", "inner": [{"model": "m", "options": {"prefix_cache": True}}, {"model": "m", "backend": "b",
            "options": {"url": "http://h"}}]}  # fmt: skip
    built = load(Outer, data, "x.yaml", resolvers={"options_of": _options})
    assert built.inner[0].options == OptionsA(prefix_cache=True) and built.inner[1].options == OptionsB("http://h")
    bad = {"name": "x", "inner": [{"model": "m", "options": {"prefx_cache": True}}, {"model": "m", "backend": "b"}]}
    bad["inner"][1]["options"] = {}
    with pytest.raises(RecipeError) as caught:
        load(Outer, bad, "recipes/runs/x.yaml", resolvers={"options_of": _options})
    message = str(caught.value)
    assert (
        "recipes/runs/x.yaml: field 'inner[0].options.prefx_cache': expected one of the known keys (prefix_cache"
        in message
    )
    assert "recipes/runs/x.yaml: field 'inner[1].options.url': expected this required key (server)" in message
    # Without a resolver the declared type (a mapping) is kept.
    assert load(Outer, bad, "x.yaml").inner[0].options == {"prefx_cache": True}


def test_rows_and_item_rows_place_the_position_before_the_field():
    problems = Problems("cat.yaml", "sources[2]")
    parse_into(Inner, {"modle": "m"}, problems)
    assert str(problems.items[0]).startswith("cat.yaml:sources[2]: field 'modle': expected one of the known keys")
    problems = Problems("data.yaml", item_rows=True)
    parse_into(Outer, {"name": "x", "inner": [{"model": "m", "colour": 1}]}, problems)
    assert str(problems.items[0]).startswith("data.yaml:inner[0]: field 'colour'")


def test_not_a_mapping_and_a_failing_post_init_are_problems_too():
    with pytest.raises(RecipeError, match=r"x\.yaml: field '<root>': expected a mapping with keys among \(name"):
        load(Outer, ["a"], "x.yaml")

    @dataclass
    class Checked:
        low: int = 0
        high: int = 1

        def __post_init__(self):
            if self.low > self.high:
                raise DataError("<recipe>", None, "high", "a value >= low", self.high)

    with pytest.raises(RecipeError, match=r"^x\.yaml: field 'high': expected a value >= low, got 0$"):
        load(Checked, {"low": 3, "high": 0}, "x.yaml")


def test_describe_lists_every_key_with_type_default_choices_and_help():
    text = describe(Outer)
    assert "name: a non-empty string; required. a name" in text
    assert "mode: one of ['fast', 'slow']; default 'fast'. how" in text
    assert "limit: an integer >= 1 or null; default None. at most" in text
    assert "  backend: a string; default 'a'. the backend (one of a, b)" in text  # nested, indented
    assert "path" not in text
