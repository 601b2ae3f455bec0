"""The append-only results store: resume, no duplicates, torn last line."""

from __future__ import annotations

import json

import pytest

from evaluation.store import RESULTS_FILE, ResultStore, read_results, record_key
from recipes.schema import DataError


def _rec(i: int, repeat: int = 0, judge: str = "j") -> dict:
    return {
        "judge": judge,
        "category": "jailbreak",
        "example_id": f"e{i}",
        "repeat": repeat,
        "human_label": i % 2,
        "label": i % 2,
        "status": "ok",
    }


def test_append_then_reopen_skips_existing_keys(tmp_path):
    with ResultStore.open(tmp_path) as store:
        assert store.append([_rec(0), _rec(1)]) == 2
        assert store.append([_rec(1), _rec(2)]) == 1  # e1 already there
        assert store.stats.skipped_existing == 1
    with ResultStore.open(tmp_path) as store:
        assert len(store) == 3
        assert ("j", "jailbreak", "e2", 0) in store
        assert store.append([_rec(0), _rec(0, repeat=1)]) == 1
    lines = (tmp_path / RESULTS_FILE).read_text().splitlines()
    keys = [record_key(json.loads(line)) for line in lines]
    assert len(keys) == len(set(keys)) == 4


def test_torn_last_line_is_dropped_counted_and_cut_before_appending(tmp_path):
    with ResultStore.open(tmp_path) as store:
        store.append([_rec(0), _rec(1)])
    path = tmp_path / RESULTS_FILE
    whole = json.dumps(_rec(2))
    with open(path, "a") as handle:
        handle.write(whole[: len(whole) // 2])  # a write cut short by a kill
    with ResultStore.open(tmp_path) as store:
        assert store.stats.torn == 1
        assert len(store) == 2
        store.append([_rec(2)])
    records = read_results(tmp_path)
    assert [r["example_id"] for r in records] == ["e0", "e1", "e2"]
    assert path.read_text().endswith("\n")


def test_whole_record_without_newline_is_kept(tmp_path):
    path = tmp_path / RESULTS_FILE
    path.write_text(json.dumps(_rec(0)) + "\n" + json.dumps(_rec(1)))
    with ResultStore.open(tmp_path) as store:
        assert store.stats.torn == 0 and len(store) == 2
        store.append([_rec(2)])
    assert [r["example_id"] for r in read_results(tmp_path)] == ["e0", "e1", "e2"]


def test_corrupt_line_in_the_middle_is_an_error_naming_the_line(tmp_path):
    path = tmp_path / RESULTS_FILE
    path.write_text(json.dumps(_rec(0)) + "\n{not json\n" + json.dumps(_rec(1)) + "\n")
    with pytest.raises(DataError, match=rf"{RESULTS_FILE}:2: field '<line>'"):
        ResultStore.open(tmp_path)


def test_duplicate_lines_are_counted_and_read_once(tmp_path):
    path = tmp_path / RESULTS_FILE
    path.write_text(json.dumps(_rec(0)) + "\n" + json.dumps({**_rec(0), "label": 1}) + "\n")
    with ResultStore.open(tmp_path) as store:
        assert store.stats.duplicates == 1 and len(store) == 1
        assert store.records()[0]["label"] == 0  # the first line wins


def test_second_writer_is_refused_while_the_first_holds_the_lock(tmp_path):
    with ResultStore.open(tmp_path), pytest.raises(RuntimeError, match="another process"):
        ResultStore.open(tmp_path)
    ResultStore.open(tmp_path).close()  # released


def test_read_results_of_missing_folder_names_the_file(tmp_path):
    with pytest.raises(DataError, match=RESULTS_FILE):
        read_results(tmp_path / "nothing")


def test_a_later_record_supersedes_a_stored_error_only(tmp_path):
    failed = {**_rec(0), "status": "error", "label": None, "error": "HTTP 503"}
    with ResultStore.open(tmp_path) as store:
        store.append([failed, _rec(1)])
        assert store.is_error(("j", "jailbreak", "e0", 0)) and not store.is_error(("j", "jailbreak", "e1", 0))
        assert store.append([_rec(0), {**_rec(1), "label": 0}]) == 1  # e0 retried; e1 stays
        assert store.stats.superseded == 1
    with ResultStore.open(tmp_path) as store:
        assert len(store) == 2 and store.stats.superseded == 1 and store.stats.duplicates == 0
        assert [r["status"] for r in store.records()] == ["ok", "ok"]
    assert len((tmp_path / RESULTS_FILE).read_text().splitlines()) == 3  # the error line stays as history
    assert [r["example_id"] for r in read_results(tmp_path)] == ["e0", "e1"]


def test_rank_files_merge_and_only_rank_0_repairs_the_others(tmp_path):
    """One file per rank: every reader merges them; an error in one is superseded by a result in another."""
    with ResultStore.open(tmp_path) as main:
        main.append([_rec(0), {**_rec(1), "status": "error", "label": None}])
        rank1 = ResultStore.open(tmp_path, rank=1)  # takes no lock: rank 0 holds the folder's
        assert rank1.path.name == "results.rank-1.jsonl" and ("j", "jailbreak", "e0", 0) in rank1
        assert rank1.is_error(("j", "jailbreak", "e1", 0))
        assert rank1.append([_rec(1), _rec(2), _rec(0)]) == 2  # e0 is rank 0's; e1's error is judged again
        assert ("j", "jailbreak", "e2", 0) not in main
        main.refresh()
        assert [r["example_id"] for r in main.records()] == ["e0", "e1", "e2"] and not main.is_error(
            ("j", "jailbreak", "e1", 0)
        )
    assert {r["example_id"]: r["status"] for r in read_results(tmp_path)} == {"e0": "ok", "e1": "ok", "e2": "ok"}

    rank_file = tmp_path / "results.rank-1.jsonl"
    with open(rank_file, "a", encoding="utf-8") as handle:
        handle.write('{"judge": "j", "categ')  # a rank killed mid-write
    size = rank_file.stat().st_size
    other = ResultStore.open(tmp_path, rank=2)
    assert rank_file.stat().st_size == size, "a rank other than 0 leaves the other files as they are"
    assert len(other) == 3 and other.stats.torn == 1
    with ResultStore.open(tmp_path) as main:
        assert rank_file.read_text().endswith("}\n") and main.stats.torn == 1  # rank 0 cut it off
        assert len(main) == 3


def test_a_record_without_its_key_names_its_file_line_past_blank_lines(tmp_path):
    path = tmp_path / "results.rank-1.jsonl"
    keyless = {k: v for k, v in _rec(1).items() if k != "judge"}
    path.write_text(json.dumps(_rec(0)) + "\n\n" + json.dumps(keyless) + "\n")
    with pytest.raises(DataError, match=r"results\.rank-1\.jsonl:3: field '<line>'"):
        read_results(tmp_path)
