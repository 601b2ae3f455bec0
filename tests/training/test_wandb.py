"""W&B (offline): the run folder holds the loss, the verdict metrics, the verdict tables and the config."""

import json
import os
import struct
import time
from pathlib import Path

from wandb.proto import wandb_internal_pb2


def _records(path: Path):
    """Decode a ``.wandb`` transaction log (7-byte header, then LevelDB-style 32 KiB blocks)."""
    data = path.read_bytes()
    assert data[:4] == b":W&B"
    position, block, pending = 7, 32768, b""
    while position + 7 <= len(data):
        room = block - position % block
        if room < 7:
            position += room
            continue
        _checksum, length, kind = struct.unpack("<IHB", data[position : position + 7])
        if length == 0 and kind == 0:
            position += room
            continue
        if position + 7 + length > len(data):
            return  # the writer is still writing this record
        pending += data[position + 7 : position + 7 + length]
        position += 7 + length
        if kind in (1, 4):  # a full record, or the last piece of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            pending = b""
            yield record


def _finished_records(path: Path, timeout: float = 60.0) -> list:
    """The run's records once W&B's writer process has written its exit record (it flushes on its own time)."""
    deadline = time.monotonic() + timeout
    while True:
        records = list(_records(path))
        if any(r.WhichOneof("record_type") == "exit" for r in records) or time.monotonic() > deadline:
            return records
        time.sleep(0.2)


def test_offline_run_holds_loss_verdict_metrics_tables_and_config(train, run_argv, tmp_path):
    out = train(
        run_argv(
            *("--report_to", "wandb", "--run_name", "judge-test", "--wandb_tags", "tiny", "ci"),
            *("--eval_strategy", "steps", "--eval_steps", "3", "--eval_on_start", "true", "--eval_loss", "false"),
            output_dir=tmp_path / "wb",
        )
    )
    run_id = (out / "wandb_run_id").read_text(encoding="utf-8").strip()
    folders = list(Path(os.environ["WANDB_DIR"]).glob(f"wandb/offline-run-*-{run_id}"))
    assert len(folders) == 1
    history, config, run = [], {}, None
    for record in _finished_records(next(folders[0].glob("*.wandb"))):
        kind = record.WhichOneof("record_type")
        if kind == "history":
            history.append({item.key or "/".join(item.nested_key): item.value_json for item in record.history.item})
        elif kind == "run":
            run = record.run
            config.update({item.key: json.loads(item.value_json) for item in record.run.config.update})
        elif kind == "config":
            config.update({item.key: json.loads(item.value_json) for item in record.config.update})
    assert run is not None and run.display_name == "judge-test" and list(run.tags) == ["tiny", "ci"]
    keys = set().union(*history)
    assert "train/loss" in keys
    for metric in ("f1", "precision", "recall", "accuracy", "invalid_rate"):
        assert f"eval/{metric}" in keys, metric
    steps_with_f1 = {int(float(row["train/global_step"])) for row in history if "eval/f1" in row}
    assert steps_with_f1 == {0, 3, 6}
    for step in (0, 3, 6):  # one table of sample verdicts per evaluation, each under its own key
        assert f"eval/verdicts_step_{step}/_type" in keys
    tables = list(folders[0].glob("files/media/table/eval/verdicts_step_*.table.json"))
    assert len(tables) == 3
    table = json.loads(tables[0].read_text(encoding="utf-8"))
    assert table["columns"] == ["id", "category", "label", "verdict", "p_positive", "correct"]
    data = config["judgeforge"]["data"]
    assert data["recipe_hash"] == "fixture0123456789" and data["prompt_template"] == "basic"
    assert data["categories"] == ["jailbreak"]
    assert config["judgeforge"]["judge"]["wandb_tags"] == ["tiny", "ci"]
    assert config["learning_rate"] == 1e-2  # TRL's own config is logged too
