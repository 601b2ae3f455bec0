"""Registered source functions: small Python steps for what a column mapping cannot express.

A source names one with ``function: <name>``. The function receives the raw rows of one file in
order and returns as many rows, usually with extra columns that the source's ``columns`` then
maps. A row it cannot build gets a :class:`DataError` under :data:`recipes.readers.ERROR_KEY`, so it
is reported (or skipped and counted) like any other bad row.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from recipes.readers import ERROR_KEY, read_csv, resolve_path, text_key
from recipes.schema import DataError
from recipes.source_config import SOURCE_FUNCTIONS, SourceConfig, register_source_function


__all__ = [
    "SOURCE_FUNCTIONS",
    "gptfuzz_prompts",
    "harmbench_turns",
    "path_fields",
    "register_source_function",
    "truthfulqa_answers",
]

_PLACEHOLDER = "[INSERT PROMPT HERE]"


def _read_index_csv(path: Path, key: str, text: str, source: SourceConfig) -> dict[int, str]:
    if not path.is_file():
        raise DataError(source.origin, source.where, "options", f"an existing file {path}", str(path))
    table: dict[int, str] = {}
    for number, row in enumerate(read_csv(path), start=1):
        if ERROR_KEY in row:
            raise row[ERROR_KEY]
        try:
            table[int(row[key])] = row[text]
        except (KeyError, TypeError, ValueError) as error:
            raise DataError(str(path), number, key, f"an integer '{key}' and a '{text}' column", row) from error
    return table


@register_source_function("gptfuzz_prompts")
def gptfuzz_prompts(rows: list[dict], *, source: SourceConfig, data_root: str | Path | None, file: str) -> list[dict]:
    """Rebuild GPTFuzz's full attack prompts: ``template.replace("[INSERT PROMPT HERE]", question)``.

    GPTFuzz's labelled responses keep only the question index. Each question has one row per
    jailbreak template, in template order, so a row's position among its question's rows is the
    template id; a question without exactly one row per template is rejected rather than
    misaligned. Adds the columns ``attack_prompt``, ``question_text`` and ``template_id``.

    Options (paths relative to --data-root; default: next to the data file): ``templates``
    (``GPTFuzzer.csv``: id, text), ``questions`` (``question_list.csv``: index, text) and
    ``question_column`` (default ``question``).
    """
    options = source.options

    def resolve(key: str, default: str) -> Path:
        value = options.get(key)
        return resolve_path(value, data_root) if value else Path(file).parent / default

    templates_path = resolve("templates", "GPTFuzzer.csv")
    templates = _read_index_csv(templates_path, "id", "text", source)
    questions = _read_index_csv(resolve("questions", "question_list.csv"), "index", "text", source)
    for number, (template_id, text) in enumerate(templates.items(), start=1):
        if _PLACEHOLDER not in text:
            raise DataError(str(templates_path), number, "text", f"a template holding {_PLACEHOLDER}", template_id)
    column = options.get("question_column", "question")
    sizes = Counter(text_key(row.get(column)) for row in rows)
    seen: Counter[str] = Counter()
    out = []
    for number, row in enumerate(rows, start=1):
        key = text_key(row.get(column))
        template_id = seen[key]
        seen[key] += 1
        new = dict(row)
        try:
            question = questions[int(key)]
        except (KeyError, ValueError):
            new[ERROR_KEY] = DataError(file, number, "prompt", f"a question index ({column}) in question_list", key)
        else:
            if sizes[key] != len(templates):
                expected = f"{len(templates)} rows for question {key} (one per template, in template order)"
                new[ERROR_KEY] = DataError(file, number, "prompt", expected, f"{sizes[key]} rows")
            else:
                new["attack_prompt"] = templates[template_id].replace(_PLACEHOLDER, question)
                new["question_text"] = question
                new["template_id"] = template_id
        out.append(new)
    return out


_HARMBENCH_TURNS = re.compile(r"\AHuman user:\n(?P<prompt>.*?)\n\nAI assistant:\n(?P<response>.*?)\s*\Z", re.S)


@register_source_function("harmbench_turns")
def harmbench_turns(rows: list[dict], *, source: SourceConfig, data_root: str | Path | None, file: str) -> list[dict]:
    """Split HarmBench's classifier-set ``input``: ``Human user:``, the prompt, ``AI assistant:``, the response.

    Adds the columns ``user_turn`` and ``assistant_turn``; a row not in that shape is a bad row.
    Option ``column`` (default ``input``) names the combined column.
    """
    column = source.options.get("column", "input")
    out = []
    for number, row in enumerate(rows, start=1):
        new = dict(row)
        match = _HARMBENCH_TURNS.match(str(row.get(column) or ""))
        if match is None:
            expected = "'Human user:\\n<prompt>\\n\\nAI assistant:\\n<response>'"
            new[ERROR_KEY] = DataError(file, number, "prompt", f"{column} shaped {expected}", row.get(column))
        else:
            new["user_turn"], new["assistant_turn"] = match["prompt"], match["response"]
        out.append(new)
    return out


_TRUTHFULQA = re.compile(r"\AQ: (?P<question>.*?)\nA: (?P<answer>.*)\nTrue:\Z", re.S)


@register_source_function("truthfulqa_answers")
def truthfulqa_answers(
    rows: list[dict], *, source: SourceConfig, data_root: str | Path | None, file: str
) -> list[dict]:
    """Split TruthfulQA's fine-tuning prompt (``Q: <question>``, ``A: <answer>``, ``True:`` lines) in two.

    Adds ``question`` (up to the first answer line: a few answers hold a second one) and ``answer``. An
    empty answer stays empty, for a ``present`` filter to count.
    """
    column = source.options.get("column", "prompt")
    out = []
    for number, row in enumerate(rows, start=1):
        new = dict(row)
        match = _TRUTHFULQA.match(str(row.get(column) or "")) if isinstance(row, dict) else None
        if match is None:
            if isinstance(row, dict) and ERROR_KEY not in row:
                expected = f"{column} shaped 'Q: <question>\\nA: <answer>\\nTrue:'"
                new[ERROR_KEY] = DataError(file, number, "prompt", expected, row.get(column))
        else:
            new["question"], new["answer"] = match["question"], match["answer"].strip()
        out.append(new)
    return out


@register_source_function("path_fields")
def path_fields(rows: list[dict], *, source: SourceConfig, data_root: str | Path | None, file: str) -> list[dict]:
    """Add columns named by the file's path, for data sets whose folders say what a row is.

    Options: ``after`` (the folder the named parts follow, e.g. ``attack-artifacts``) and
    ``fields`` (names for the path parts after it, in order; the file's own name counts without its
    suffix). A path with fewer parts fills what it has (latent_jailbreak's benign sets have no
    target-group folder).
    """
    after, names = source.options.get("after"), source.options.get("fields") or []
    parts = list(Path(file).parts)
    if not after or after not in parts or not isinstance(names, list):
        expected = "'after': a folder of the path and 'fields': [names]"
        raise DataError(source.origin, source.where, "options", expected, file)
    tail = parts[parts.index(after) + 1 :]
    tail[-1] = Path(tail[-1]).stem
    values = dict(zip(names, tail))
    return [{**row, **values} if isinstance(row, dict) else row for row in rows]
