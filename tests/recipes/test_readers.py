"""File readers on hostile input: unterminated quotes, BOMs, bad encodings, huge fields, ragged rows."""

from __future__ import annotations

import json

import pytest
from recipes_helpers import TOY_COLUMNS, TOY_LABELS, toy_rows, write_csv

from recipes.readers import ERROR_KEY, read_csv, read_json, read_jsonl
from recipes.schema import DataError
from recipes.sources import BadRowsError, load_source, parse_source


def _load(root, path="toy.csv", kind="csv", on_bad_row="error"):
    source = {"name": "toy", "kind": kind, "path": path, "columns": TOY_COLUMNS, "label_map": TOY_LABELS}
    return load_source(parse_source(source, origin="cat.yaml"), "toy", data_root=root, on_bad_row=on_bad_row)


def test_an_unterminated_quote_is_an_error_naming_file_and_row(tmp_path):
    path = tmp_path / "chats.csv"
    path.write_text('id,prompt,response\n1,a,"fine"\n2,b,"never closed\n3,c,d\n4,e,f\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"chats\.csv:2: .*closing quote.*line 3"):
        read_csv(path)


def test_a_closed_multiline_field_is_not_an_unterminated_quote(tmp_path):
    path = tmp_path / "chats.csv"
    path.write_text('id,prompt,response\n1,a,"two\nlines, ""quoted"""\n2,b,"x"\n', encoding="utf-8")
    assert [r["response"] for r in read_csv(path)] == ['two\nlines, "quoted"', "x"]


def test_a_utf8_bom_does_not_rename_the_first_column(tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes("\ufeffid,prompt,response\n1,a,b\n".encode())
    assert list(read_csv(path)[0]) == ["id", "prompt", "response"]
    jsonl = tmp_path / "bom.jsonl"
    jsonl.write_bytes("\ufeff".encode() + json.dumps({"id": "1"}).encode() + b"\n")
    assert read_jsonl(jsonl)[0] == [{"id": "1"}]
    array = tmp_path / "bom.json"
    array.write_bytes("\ufeff[{}]".encode())
    assert read_json(array) == [{}]


@pytest.mark.parametrize("reader", [read_csv, read_jsonl, read_json], ids=["csv", "jsonl", "json"])
def test_non_utf8_bytes_name_the_file_line_and_offset(tmp_path, reader):
    path = tmp_path / "latin1.txt"
    path.write_bytes(b'id,prompt,response\n1,"caf\xe9",b\n')
    with pytest.raises(DataError, match=r"latin1\.txt:2: .*UTF-8.*offset 25"):
        reader(path)


def test_a_field_over_128kb_is_read(tmp_path):
    path = tmp_path / "big.csv"
    path.write_text("id,prompt,response\n1,a," + "x" * 300_000 + "\n", encoding="utf-8")
    assert len(read_csv(path)[0]["response"]) == 300_000


def test_an_empty_csv_is_an_error(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("", encoding="utf-8")
    with pytest.raises(DataError, match=r"empty\.csv: .*header"):
        read_csv(path)


def test_a_row_with_more_fields_than_the_header_is_a_bad_row(tmp_path):
    path = tmp_path / "ragged.csv"
    path.write_text("id,prompt,response\n1,a,b\n2,c,d,EXTRA\n", encoding="utf-8")
    rows = read_csv(path)
    assert rows[0] == {"id": "1", "prompt": "a", "response": "b"}
    error = rows[1][ERROR_KEY]
    assert isinstance(error, DataError) and (error.file, error.row) == (str(path), 2)
    assert "3 fields as in the header" in str(error)


def test_a_source_with_ragged_rows_names_file_and_row(tmp_path):
    rows = toy_rows(4)
    write_csv(tmp_path / "toy.csv", rows)
    with open(tmp_path / "toy.csv", "a", encoding="utf-8") as handle:
        handle.write("q,a,BAD,g,extra,more\n")
    with pytest.raises(BadRowsError, match=r"toy\.csv:5: "):
        _load(tmp_path)
    assert _load(tmp_path, on_bad_row="skip").report.skipped == 1


@pytest.mark.parametrize(
    ("name", "text"),
    [("empty.csv", ""), ("header.csv", "q,a,verdict,g\n"), ("empty.jsonl", "\n\n")],
    ids=["empty_csv", "header_only_csv", "empty_jsonl"],
)
def test_a_source_file_without_rows_is_an_error(tmp_path, name, text):
    (tmp_path / name).write_text(text, encoding="utf-8")
    kind = "jsonl" if name.endswith(".jsonl") else "csv"
    with pytest.raises(DataError, match=rf"{name}.*(row|header)"):
        _load(tmp_path, path=name, kind=kind)


def test_ragged_rows_and_a_missing_column_give_a_data_error_not_a_type_error(tmp_path):
    (tmp_path / "toy.csv").write_text("q,a\nx,y,z\nu,v\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"toy\.csv:1: field 'label': expected a column 'verdict'"):
        _load(tmp_path)
