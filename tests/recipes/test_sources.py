"""Source loaders: every kind, column and label mapping, filters, majority vote, functions, bad rows."""

from __future__ import annotations

import json

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from recipes_helpers import TOY_COLUMNS, TOY_LABELS, toy_rows, write_csv, write_jsonl, write_yaml

from recipes.schema import DataError
from recipes.sources import BadRowsError, load_source, parse_source


def _source(**overrides) -> dict:
    return {
        "name": "toy",
        "kind": "csv",
        "path": "toy.csv",
        "columns": TOY_COLUMNS,
        "label_map": TOY_LABELS,
        **overrides,
    }


def _load(mapping: dict, root, on_bad_row="error"):
    return load_source(
        parse_source(mapping, origin="cat.yaml", where="sources[0]"), "toy", data_root=root, on_bad_row=on_bad_row
    )


def _expected_labels(rows):
    return [TOY_LABELS[r["verdict"]] for r in rows]


def test_csv_maps_columns_and_labels(tmp_path):
    rows = toy_rows(10)
    write_csv(tmp_path / "toy.csv", rows)
    loaded = _load(_source(), tmp_path)
    assert [e["prompt"] for e in loaded.examples] == [r["q"] for r in rows]
    assert [e["response"] for e in loaded.examples] == [r["a"] for r in rows]
    assert [e["label"] for e in loaded.examples] == _expected_labels(rows)
    assert [e["group"] for e in loaded.examples] == [r["topic"] for r in rows]
    first = loaded.examples[0]
    assert first["category"] == "toy" and first["source"] == "toy"
    assert first["meta"]["origin"] == "toy.csv:1"
    assert len({e["id"] for e in loaded.examples}) == 10  # content-hash ids when the source has none
    assert (loaded.report.rows_read, loaded.report.loaded, loaded.report.skipped) == (10, 10, 0)


def test_json_jsonl_parquet_give_the_same_examples(tmp_path):
    rows = toy_rows(8)
    (tmp_path / "toy.json").write_text(json.dumps(rows), encoding="utf-8")
    write_jsonl(tmp_path / "toy.jsonl", rows)
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "toy.parquet")
    results = {}
    for kind in ("json", "jsonl", "parquet"):
        loaded = _load(_source(kind=kind, path=f"toy.{kind}"), tmp_path)
        results[kind] = [(e["id"], e["prompt"], e["response"], e["label"]) for e in loaded.examples]
    assert results["json"] == results["jsonl"] == results["parquet"]
    assert [r[3] for r in results["json"]] == _expected_labels(rows)


def test_typed_values_are_mapped_as_text(tmp_path):
    # JSON gives booleans and numbers; label_map keys and filters compare their text form.
    rows = [{"q": "p1", "a": "r1", "flag": True, "n": 1}, {"q": "p2", "a": "r2", "flag": False, "n": 2}]
    write_jsonl(tmp_path / "typed.jsonl", rows)
    mapping = {
        "name": "typed",
        "kind": "jsonl",
        "path": "typed.jsonl",
        "columns": {"prompt": "q", "response": "a", "label": "flag", "meta.n": "n"},
        "label_map": {"true": 1, "false": 0},
        "filters": [{"column": "n", "in": [1, 2]}],
    }
    loaded = _load(mapping, tmp_path)
    assert [e["label"] for e in loaded.examples] == [1, 0]
    assert loaded.examples[0]["meta"]["n"] == 1


def test_label_without_map_accepts_0_and_1(tmp_path):
    write_csv(tmp_path / "plain.csv", [{"q": "p", "a": "r", "label": "1"}, {"q": "p2", "a": "r2", "label": "0"}])
    mapping = {
        "name": "plain",
        "kind": "csv",
        "path": "plain.csv",
        "columns": {"prompt": "q", "response": "a", "label": "label"},
    }
    assert [e["label"] for e in _load(mapping, tmp_path).examples] == [1, 0]


def test_context_and_meta_columns(tmp_path):
    write_csv(tmp_path / "ctx.csv", [{"q": "p", "a": "r", "y": "no", "ref": "Paris", "sys": "", "m": "x"}])
    columns = {
        "prompt": "q",
        "response": "a",
        "label": "y",
        "context.reference": "ref",
        "context.system": "sys",
        "meta.model": "m",
        "id": "q",
    }
    example = _load(_source(path="ctx.csv", columns=columns), tmp_path).examples[0]
    assert example["context"] == {"reference": "Paris"}  # empty cells are left out
    assert example["meta"]["model"] == "x"
    assert example["id"] == "p"


def test_filters_keep_matching_rows_and_count_the_rest(tmp_path):
    rows = toy_rows(20)
    write_csv(tmp_path / "toy.csv", rows)
    kept = _load(_source(filters=[{"column": "kind", "equals": "keep"}]), tmp_path)
    assert [e["prompt"] for e in kept.examples] == [r["q"] for r in rows if r["kind"] == "keep"]
    assert kept.report.filtered == sum(r["kind"] == "drop" for r in rows)
    assert kept.report.filters == ["kind equals keep"]
    dropped = _load(_source(filters=[{"column": "kind", "not_in": ["keep"]}]), tmp_path)
    assert len(dropped.examples) == kept.report.filtered


def test_majority_vote_keeps_annotations_and_agreement(tmp_path):
    rows = [
        {"q": "p1", "a": "r1", "h1": "yes", "h2": "yes", "h3": "no"},
        {"q": "p2", "a": "r2", "h1": "no", "h2": "no", "h3": "no"},
        {"q": "p3", "a": "r3", "h1": "yes", "h2": "", "h3": "yes"},
    ]
    write_csv(tmp_path / "votes.csv", rows)
    mapping = {
        "name": "votes",
        "kind": "csv",
        "path": "votes.csv",
        "columns": {"prompt": "q", "response": "a"},
        "label_map": TOY_LABELS,
        "annotations": ["h1", "h2", "h3"],
    }
    examples = _load(mapping, tmp_path).examples
    assert [e["label"] for e in examples] == [1, 0, 1]
    assert [e["annotations"] for e in examples] == [[1, 1, 0], [0, 0, 0], [1, 1]]
    assert [e["meta"]["agreement"] for e in examples] == [pytest.approx(2 / 3, abs=1e-4), 1.0, 1.0]
    assert [e["meta"]["annotators"] for e in examples] == [3, 3, 2]


def test_label_column_wins_over_annotations_and_agreement_is_against_it(tmp_path):
    write_csv(tmp_path / "final.csv", [{"q": "p", "a": "r", "final": "yes", "h1": "yes", "h2": "no"}])
    mapping = {
        "name": "final",
        "kind": "csv",
        "path": "final.csv",
        "label_map": TOY_LABELS,
        "columns": {"prompt": "q", "response": "a", "label": "final"},
        "annotations": ["h1", "h2"],
    }
    example = _load(mapping, tmp_path).examples[0]
    assert (example["label"], example["annotations"], example["meta"]["agreement"]) == (1, [1, 0], 0.5)


def test_tied_vote_without_label_column_is_a_bad_row(tmp_path):
    write_csv(tmp_path / "tie.csv", [{"q": "p", "a": "r", "h1": "yes", "h2": "no"}])
    mapping = {
        "name": "tie",
        "kind": "csv",
        "path": "tie.csv",
        "columns": {"prompt": "q", "response": "a"},
        "label_map": TOY_LABELS,
        "annotations": ["h1", "h2"],
    }
    with pytest.raises(DataError, match=r"tie\.csv:1: field 'label': expected a strict majority"):
        _load(mapping, tmp_path)


def test_several_files_in_one_source(tmp_path):
    write_csv(tmp_path / "a.csv", toy_rows(4))
    write_csv(tmp_path / "b" / "b.csv", toy_rows(6)[4:])
    loaded = _load(_source(path=["a.csv", "b/b.csv"]), tmp_path)
    assert len(loaded.examples) == 6
    assert loaded.examples[-1]["meta"]["origin"] == "b/b.csv:2"


def test_embedded_source_reads_packaged_jsonl():
    loaded = load_source(parse_source({"name": "embedded", "kind": "embedded"}), "jailbreak")
    if not loaded.examples:
        pytest.skip("embedded jailbreak data not written yet")
    example = loaded.examples[0]
    assert example["category"] == "jailbreak" and example["label"] in (0, 1)
    assert example["meta"]["origin"].startswith("embedded/jailbreak.jsonl:")
    assert loaded.report.location == "embedded/jailbreak.jsonl"


def test_embedded_keys_context_and_explanation(tmp_path, monkeypatch):
    import recipes.sources as sources

    monkeypatch.setattr(sources, "EMBEDDED_DIR", tmp_path)
    row = {
        "id": "t-1",
        "prompt": "p",
        "response": "r",
        "label": 1,
        "group": "g1",
        "context": {"secret": "s3cret"},
        "explanation": "why",
        "difficulty": "hard",
    }
    write_jsonl(tmp_path / "toy.jsonl", [row, {**row, "id": "t-2", "group": None, "context": None, "response": "r2"}])
    first, second = load_source(parse_source({"name": "embedded", "kind": "embedded"}), "toy").examples
    assert (first["id"], first["group"], first["context"]) == ("t-1", "g1", {"secret": "s3cret"})
    assert first["meta"]["explanation"] == "why" and first["meta"]["difficulty"] == "hard"
    assert (second["group"], second["context"]) == ("t-2", {})  # group defaults to the id


def test_hub_kind_loads_a_local_data_set_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    folder = tmp_path / "hubset"
    rows = toy_rows(6)
    pq.write_table(
        pa.Table.from_pylist(rows[:4]), (folder / "general").mkdir(parents=True) or folder / "general" / "a.parquet"
    )
    pq.write_table(pa.Table.from_pylist(rows[4:]), folder / "general" / "b.parquet")
    (folder / "README.md").write_text(
        "---\nconfigs:\n- config_name: general\n  data_files:\n  - split: first\n    path: general/a.parquet\n"
        "  - split: second\n    path: general/b.parquet\n---\n",
        encoding="utf-8",
    )
    mapping = _source(kind="hub", hub_id="hubset", config="general", split="first+second")
    del mapping["path"]
    loaded = _load(mapping, tmp_path)  # hub_id resolved against the data root
    assert [e["prompt"] for e in loaded.examples] == [r["q"] for r in rows]
    assert loaded.report.location == "hub:hubset/general/first+second"
    assert loaded.examples[0]["meta"]["origin"] == "hub:hubset[general][first+second]:1"


def test_hub_kind_that_cannot_load_names_the_source(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    mapping = _source(kind="hub", hub_id=str(tmp_path / "missing-folder"))
    with pytest.raises(DataError, match=r"cat\.yaml:sources\[0\]: field 'hub_id'"):
        _load(mapping, tmp_path)


def _gptfuzz_files(root, questions=2, templates=3):
    write_csv(
        root / "gf" / "GPTFuzzer.csv", [{"id": t, "text": f"T{t}: [INSERT PROMPT HERE] now"} for t in range(templates)]
    )
    write_csv(root / "gf" / "question_list.csv", [{"index": q, "text": f"question {q}?"} for q in range(questions)])
    rows = [
        {"question": q, "Response": f"answer {q}-{t}", "label": (q + t) % 2}
        for q in range(questions)
        for t in range(templates)
    ]
    write_csv(root / "gf" / "train.csv", rows)
    return {
        "name": "gptfuzz",
        "kind": "csv",
        "path": "gf/train.csv",
        "function": "gptfuzz_prompts",
        "columns": {
            "prompt": "attack_prompt",
            "response": "Response",
            "label": "label",
            "group": "question",
            "meta.template_id": "template_id",
        },
    }


def test_gptfuzz_function_rebuilds_attack_prompts(tmp_path):
    examples = _load(_gptfuzz_files(tmp_path), tmp_path).examples
    assert [e["prompt"] for e in examples[:3]] == ["T0: question 0? now", "T1: question 0? now", "T2: question 0? now"]
    assert examples[4]["prompt"] == "T1: question 1? now"
    assert [e["meta"]["template_id"] for e in examples] == [0, 1, 2, 0, 1, 2]
    assert [e["group"] for e in examples] == ["0", "0", "0", "1", "1", "1"]
    assert not any("[INSERT PROMPT HERE]" in e["prompt"] for e in examples)


def test_gptfuzz_function_rejects_a_question_without_one_row_per_template(tmp_path):
    mapping = _gptfuzz_files(tmp_path)
    rows = [{"question": 0, "Response": f"a{t}", "label": 0} for t in range(2)]  # 2 rows for 3 templates
    write_csv(tmp_path / "gf" / "train.csv", rows)
    with pytest.raises(DataError, match=r"train\.csv:1: field 'prompt': expected 3 rows for question 0"):
        _load(mapping, tmp_path)


# ---------------------------------------------------------------------------------------------
# Bad input: each error names the file, the row and the field
# ---------------------------------------------------------------------------------------------


def test_missing_file_names_declaring_file_and_path(tmp_path):
    with pytest.raises(DataError, match=r"cat\.yaml:sources\[0\]: field 'path': expected an existing file.*toy\.csv"):
        _load(_source(), tmp_path)


def test_missing_column_names_file_row_field_and_the_columns_found(tmp_path):
    write_csv(tmp_path / "toy.csv", toy_rows(3))
    columns = {**TOY_COLUMNS, "response": "answer"}
    with pytest.raises(DataError) as caught:
        _load(_source(columns=columns), tmp_path)
    message = str(caught.value)
    assert "toy.csv:1: field 'response': expected a column 'answer'" in message
    assert "'q'" in message  # the columns that do exist


def test_label_outside_mapping(tmp_path):
    rows = toy_rows(4)
    rows[2]["verdict"] = "maybe"
    write_csv(tmp_path / "toy.csv", rows)
    with pytest.raises(DataError) as caught:
        _load(_source(), tmp_path)
    assert str(caught.value) == (
        f"{tmp_path / 'toy.csv'}:3: field 'label': expected one of ['no', 'yes'] "
        "(label_map of column 'verdict'), got 'maybe'"
    )


@pytest.mark.parametrize("field_name", ["prompt", "response"])
def test_empty_prompt_or_response(tmp_path, field_name):
    rows = toy_rows(4)
    rows[1][TOY_COLUMNS[field_name]] = "   "
    write_csv(tmp_path / "toy.csv", rows)
    with pytest.raises(DataError, match=rf"toy\.csv:2: field '{field_name}': expected a non-empty string"):
        _load(_source(), tmp_path)


def test_whole_file_is_checked_and_first_problems_reported_together(tmp_path):
    rows = toy_rows(12)
    for i in (1, 4, 6, 8, 9, 10, 11):
        rows[i]["verdict"] = "??"
    rows[3]["a"] = ""
    write_csv(tmp_path / "toy.csv", rows)
    with pytest.raises(BadRowsError) as caught:
        _load(_source(), tmp_path)
    lines = str(caught.value).splitlines()
    assert caught.value.total == 8
    assert [line.split(": field")[0].rsplit(":", 1)[1] for line in lines[:5]] == ["2", "4", "5", "7", "9"]
    assert "field 'response'" in lines[1]
    assert lines[-1].startswith("... and 3 more bad rows")
    assert isinstance(caught.value, ValueError)


def test_skip_counts_bad_rows_with_reasons(tmp_path):
    rows = toy_rows(10)
    rows[0]["verdict"] = "??"
    rows[5]["q"] = ""
    write_csv(tmp_path / "toy.csv", rows)
    loaded = _load(_source(), tmp_path, on_bad_row="skip")
    assert len(loaded.examples) == 8
    assert loaded.report.skipped == 2
    assert sum(loaded.report.skip_reasons.values()) == 2
    assert any("field 'label'" in reason for reason in loaded.report.skip_reasons)
    assert any(":6: field 'prompt'" in row for row in loaded.report.skipped_rows)


def test_bad_json_line_is_a_bad_row(tmp_path):
    path = write_jsonl(tmp_path / "toy.jsonl", toy_rows(3))
    path.write_text(path.read_text() + "{not json\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"toy\.jsonl:4: field '<line>': expected one JSON object"):
        _load(_source(kind="jsonl", path="toy.jsonl"), tmp_path)


def test_json_lines_read_as_json_hint_the_right_kind(tmp_path):
    write_jsonl(tmp_path / "toy.json", toy_rows(3))
    with pytest.raises(DataError, match="use kind: jsonl"):
        _load(_source(kind="json", path="toy.json"), tmp_path)


@pytest.mark.parametrize(
    ("overrides", "field_name"),
    [
        pytest.param({"kind": "xml"}, "kind", id="unknown_kind"),
        pytest.param({"colour": "red"}, "colour", id="unknown_key"),
        pytest.param({"path": None}, "path", id="file_kind_without_path"),
        pytest.param({"columns": {"prompt": "q"}}, "columns.response", id="missing_response_column"),
        pytest.param({"columns": {"prompt": "q", "response": "a"}}, "columns.label", id="no_label_no_annotations"),
        pytest.param({"columns": {**TOY_COLUMNS, "score": "s"}}, "columns.score", id="unknown_field"),
        pytest.param({"label_map": {True: 1}}, "label_map", id="unquoted_yes_key"),
        pytest.param({"label_map": {"yes": 2}}, "label_map.yes", id="label_not_binary"),
        pytest.param({"filters": [{"column": "kind", "equals": 1, "in": [2]}]}, "filters[0]", id="two_filter_ops"),
        pytest.param({"function": "no_such_function"}, "function", id="unregistered_function"),
        pytest.param({"assign_split": "dev"}, "assign_split", id="unknown_split"),
    ],
)
def test_bad_source_mapping_names_file_position_and_key(overrides, field_name):
    with pytest.raises(DataError) as caught:
        parse_source(_source(**overrides), origin="cat.yaml", where="sources[2]")
    assert str(caught.value).startswith(f"cat.yaml:sources[2]: field '{field_name}'")


def test_every_kind_parses_from_yaml(tmp_path):
    text = write_yaml(
        tmp_path / "s.yaml", [{"name": "e", "kind": "embedded"}, _source(kind="hub", hub_id="o/n")]
    ).read_text()
    import yaml

    parsed = [parse_source(item) for item in yaml.safe_load(text)]
    assert [p.kind for p in parsed] == ["embedded", "hub"]
    assert parsed[1].location == "hub:o/n/train"


# ----------------------------------------------------------------------------------------------
# Reader options, glob paths, the present filter, label origin (the real sources' formats)
# ----------------------------------------------------------------------------------------------


def test_csv_comment_lines_before_the_header_are_skipped(tmp_path):
    rows = toy_rows(6)
    write_csv(tmp_path / "plain.csv", rows)
    body = (tmp_path / "plain.csv").read_text("utf-8")
    (tmp_path / "toy.csv").write_text("# dataset_version=1.0,,,\n# a note\n" + body, "utf-8")
    loaded = _load(_source(reader={"comment_prefix": "#"}), tmp_path)
    assert [e["label"] for e in loaded.examples] == _expected_labels(rows)
    with pytest.raises(DataError):  # without the option the comment is the header
        _load(_source(), tmp_path)


def test_tsv_with_quoting_disabled_keeps_bare_quotes(tmp_path):
    lines = ["q\ta\tverdict\ttopic", 'he said "hi\tok "yes" ok\tyes\tt1', "plain\tanswer\tno\tt2"]
    (tmp_path / "toy.tsv").write_text("\n".join(lines) + "\n", "utf-8")
    loaded = _load(_source(path="toy.tsv", reader={"delimiter": "\t", "quoting": False}), tmp_path)
    assert [e["prompt"] for e in loaded.examples] == ['he said "hi', "plain"]
    assert loaded.examples[0]["response"] == 'ok "yes" ok' and loaded.examples[0]["label"] == 1


def test_json_records_key_single_objects_and_glob_paths(tmp_path):
    rows = toy_rows(4)
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.json").write_text(json.dumps({"meta": 1, "items": rows[:3]}), "utf-8")
    (tmp_path / "a" / "y.json").write_text(json.dumps({"meta": 2, "items": rows[3:]}), "utf-8")
    loaded = _load(_source(kind="json", path="a/*.json", reader={"records": "items"}), tmp_path)
    assert [e["prompt"] for e in loaded.examples] == [r["q"] for r in rows]
    assert loaded.examples[3]["meta"]["origin"] == "a/y.json:1"
    for i, row in enumerate(rows):
        (tmp_path / "tree" / f"g{i % 2}").mkdir(parents=True, exist_ok=True)
        (tmp_path / "tree" / f"g{i % 2}" / f"{i}.json").write_text(json.dumps(row), "utf-8")
    tree = _load(_source(kind="json", path="tree/**/*.json", reader={"records": "."}), tmp_path)
    assert tree.report.rows_read == 4 and sorted(e["prompt"] for e in tree.examples) == sorted(r["q"] for r in rows)
    with pytest.raises(DataError, match="an existing file"):
        _load(_source(kind="json", path="nothing/*.json", reader={"records": "."}), tmp_path)


def test_present_filter_drops_null_and_blank_values_and_counts_them(tmp_path):
    rows = toy_rows(6)
    rows[1]["a"], rows[4]["a"] = None, "   "
    write_jsonl(tmp_path / "toy.jsonl", rows)
    loaded = _load(_source(kind="jsonl", path="toy.jsonl", filters=[{"column": "a", "present": True}]), tmp_path)
    assert loaded.report.filtered == 2 and loaded.report.filtered_by == {"a present true": 2}
    assert len(loaded.examples) == 4


def test_label_origin_is_recorded_and_checked(tmp_path):
    write_csv(tmp_path / "toy.csv", toy_rows(4))
    loaded = _load(_source(label_origin="machine"), tmp_path)
    assert loaded.report.label_origin == "machine"
    assert {e["meta"]["label_origin"] for e in loaded.examples} == {"machine"}
    assert _load(_source(), tmp_path).report.label_origin == "unspecified"
    with pytest.raises(DataError, match="label_origin"):
        parse_source(_source(label_origin="crowd"))


@pytest.mark.parametrize(
    ("overrides", "field_name"),
    [
        ({"reader": {"records": "x"}}, "reader.records"),
        ({"reader": {"delimiter": "ab"}}, "reader.delimiter"),
        ({"reader": "tab"}, "reader"),
        ({"filters": [{"column": "a", "present": "yes"}]}, "filters[0].present"),
    ],
)
def test_bad_reader_options_name_the_key(overrides, field_name):
    with pytest.raises(DataError) as error:
        parse_source(_source(**overrides), origin="cat.yaml")
    assert "cat.yaml" in str(error.value) and field_name in str(error.value)
