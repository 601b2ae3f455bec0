"""The frozen layer cache: replayed rows are exactly what the frozen layers compute, and it saves them."""

import json
import logging
import math

import pytest
import torch
from peft import LoraConfig, get_peft_model
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from training.frozen_cache import FrozenLayerCache, frozen_bottom_layers, shared_runs


ON_EVERY_DEVICE = pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])


def _top_layer_lora(tiny_model_dir, device="cpu"):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).to(device)
    names = [f"model.layers.1.self_attn.{m}" for m in ("q_proj", "v_proj")] + ["model.layers.1.mlp.down_proj"]
    model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=names, init_lora_weights=False))
    return model


def _batch(rows, width, device="cpu"):
    ids = torch.zeros((len(rows), width), dtype=torch.long)
    mask = torch.zeros_like(ids)
    for r, row in enumerate(rows):
        ids[r, : len(row)] = torch.tensor(row)
        mask[r, : len(row)] = 1
    labels = ids.masked_fill(mask == 0, -100)
    return {"input_ids": ids.to(device), "attention_mask": mask.to(device), "labels": labels.to(device)}


def _loss_and_grads(model, batch):
    model.zero_grad()
    loss = model(**batch).loss
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    return loss.detach(), grads


@ON_EVERY_DEVICE
def test_replayed_rows_give_the_same_loss_and_gradients(tiny_model_dir, device):
    model = _top_layer_lora(tiny_model_dir, device)
    assert frozen_bottom_layers(model) == 1
    rows = [[5, 6, 7, 8, 9, 10], [11, 12, 13], [14, 15, 16, 17]]
    reference = _loss_and_grads(model.train(), _batch(rows, 6, device))

    cache = FrozenLayerCache(model, 1)
    calls = []
    original = cache._originals[0]
    cache._originals[0] = lambda *a, **k: (calls.append(1), original(*a, **k))[1]
    first = _loss_and_grads(model, _batch(rows, 6, device))
    # Another epoch: other batch partners and padding width; the rows are replayed, not computed.
    again = _loss_and_grads(model, _batch([rows[2], rows[0]], 8, device))
    alone = _loss_and_grads(model, _batch([rows[1]], 3, device))
    assert len(calls) == 1 and (cache.hits, cache.misses) == (3, 3)
    for (loss, grads), expected in ((first, reference), (again, None), (alone, None)):
        assert torch.isfinite(loss)
        if expected is not None:
            assert torch.allclose(loss, expected[0]) and all(torch.allclose(grads[n], expected[1][n]) for n in grads)
    cache.remove()
    uncached_again = _loss_and_grads(model, _batch([rows[2], rows[0]], 8, device))
    assert torch.allclose(again[0], uncached_again[0], atol=1e-6)
    assert all(torch.allclose(again[1][n], uncached_again[1][n], atol=1e-6) for n in again[1])


def test_eval_mode_and_left_padding_are_computed_not_cached(tiny_model_dir):
    model = _top_layer_lora(tiny_model_dir)
    cache = FrozenLayerCache(model, 1)
    with torch.no_grad():
        model.eval()(**_batch([[5, 6, 7]], 3))
        model.train()
        left = _batch([[5, 6, 7], [8, 9]], 3)
        left["input_ids"][1] = torch.tensor([0, 8, 9])
        left["attention_mask"][1] = torch.tensor([0, 1, 1])
        model(input_ids=left["input_ids"], attention_mask=left["attention_mask"])
    assert (cache.hits, cache.misses) == (0, 0)


def test_a_trainable_layer_below_is_refused(tiny_model_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    model = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj"]))  # every layer adapted
    assert frozen_bottom_layers(model) == 0
    with pytest.raises(ValueError, match="expected 1 to 0 layers"):
        FrozenLayerCache(model, 1)


def test_training_with_the_cache_matches_training_without(train, run_argv, tmp_path, caplog):
    def run(name, *extra):
        # float32: bfloat16 matmuls round differently for other batch shapes, which hides exactness.
        argv = run_argv(
            "--lora_layers", "1", "--max_steps", "18", "--bf16", "false", *extra, output_dir=tmp_path / name
        )
        out = train(argv)
        history = json.loads((out / "trainer_state.json").read_text(encoding="utf-8"))["log_history"]
        lines = (out / "validation_verdicts.jsonl").read_text(encoding="utf-8").splitlines()
        verdicts = [json.loads(line)["p_positive"] for line in lines]
        return [e["loss"] for e in history if "loss" in e], load_file(str(out / "adapter_model.safetensors")), verdicts

    plain_losses, plain_adapter, plain_verdicts = run("plain")
    with caplog.at_level(logging.INFO, logger="training"):
        cached_losses, cached_adapter, cached_verdicts = run("cached", "--cache_frozen_layers", "true")
    # 24 rows (17 distinct token sequences) and 8 validation prompts (7 distinct), stored before training; the
    # rows are replayed in each of the three epochs (6 steps each), the prompts by the verdict judge.
    assert "stored 24 distinct rows of 24 training rows and 8 validation prompts" in caplog.text
    assert "72 training rows replayed, 24 computed" in caplog.text
    assert "8 validation prompts replayed" in caplog.text
    assert cached_losses == pytest.approx(plain_losses, rel=1e-4, abs=1e-5)
    assert all(torch.allclose(cached_adapter[k], plain_adapter[k], atol=1e-5) for k in plain_adapter)
    assert len(plain_verdicts) == 8 and cached_verdicts == pytest.approx(plain_verdicts, abs=1e-5)


def test_held_rows_replay_in_eval_mode_left_or_right_padded(tiny_model_dir):
    """The verdict judge's batches: eval mode, left-padded with natural position ids."""
    model = _top_layer_lora(tiny_model_dir)
    rows = [[5, 6, 7, 8, 9, 10], [11, 12, 13]]
    left = _batch([[0, 0, 0, 11, 12, 13], rows[0]], 6)
    left["attention_mask"][0, :3] = 0
    left["position_ids"] = (left["attention_mask"].cumsum(-1) - 1).clamp(min=0)
    del left["labels"]
    right = _batch(rows, 6)
    del right["labels"]
    model.eval()
    with torch.no_grad():
        expected = [model(**batch).logits for batch in (left, right)]
        cache = FrozenLayerCache(model, 1)
        assert cache.fill(model, rows, min_shared=0) == 2
        got = [model(**batch).logits for batch in (left, right)]
        shifted = dict(left, position_ids=left["position_ids"] + 1)  # not the positions the rows were stored at
        model(**shifted)
    assert cache.eval_hits == 4 and (cache.hits, cache.misses) == (0, 2)
    masks = [left["attention_mask"], right["attention_mask"]]
    for want, have, mask in zip(expected, got, masks):
        real = mask.bool()
        assert torch.allclose(have[real], want[real], atol=1e-5)


def test_the_cache_needs_lora_on_top_layers(train, run_argv, tmp_path):
    from training.checks import ConfigError

    with pytest.raises(ConfigError, match="cache_frozen_layers"):
        train(run_argv("--cache_frozen_layers", "true", output_dir=tmp_path / "x"))


@pytest.mark.gpu
def test_cached_verdict_only_training_in_bf16_on_cuda(train, run_argv, tmp_path, caplog):
    """The CPU quickstart's objective and cache under CUDA's bf16 mixed precision (TRL's GPU default)."""
    with caplog.at_level(logging.INFO, logger="training"):
        out = train(
            run_argv(
                *("--lora_layers", "1", "--cache_frozen_layers", "true", "--verdict_loss_only", "true"),
                *("--bf16", "true", "--max_steps", "12"),
                output_dir=tmp_path / "cuda",
            )
        )
    assert "stored 24 distinct rows of 24 training rows and 8 validation prompts" in caplog.text
    assert "48 training rows replayed" in caplog.text and "8 validation prompts replayed" in caplog.text
    history = json.loads((out / "trainer_state.json").read_text(encoding="utf-8"))["log_history"]
    losses = [e["loss"] for e in history if "loss" in e]
    assert len(losses) == 12 and all(math.isfinite(x) for x in losses)
    adapter = load_file(str(out / "adapter_model.safetensors"))
    trained = [t for k, t in adapter.items() if "lora_B" in k]
    assert trained and all(bool(torch.isfinite(t).all()) and t.abs().sum() > 0 for t in trained)
    summary = json.loads((out / "train_summary.json").read_text(encoding="utf-8"))
    assert summary["verdict_metrics"]["judged"] == 8 and summary["verdict_metrics"]["invalid_rate"] == 0.0


def test_rounded_training_batches_replay(train, run_argv, tmp_path, caplog):
    """pad_to_multiple_of bounds the training batch shapes; rows stored unpadded still replay."""
    with caplog.at_level(logging.INFO, logger="training.trainer"):
        train(
            run_argv(
                *("--lora_layers", "1", "--cache_frozen_layers", "true", "--pad_to_multiple_of", "64"),
                *("--max_steps", "12", "--bf16", "false"),
                output_dir=tmp_path / "rounded",
            )
        )
    assert "48 training rows replayed, 24 computed" in caplog.text


def test_shared_runs_group_rows_by_their_common_leading_tokens():
    ids = [[1, 2, 3, 4, 5, 6], [1, 2, 3, 4, 7], [1, 2, 3, 4, 5, 8, 9], [9, 9], [1, 2, 3]]
    # [1, 2, 3] joins the run (3 tokens in common) but must keep one token of its own: 2 < 3 shared.
    assert shared_runs(ids, range(len(ids)), 0, 3) == [([4, 0, 2, 1], 0), ([3], 0)]
    assert shared_runs(ids, [0, 1, 2, 3], 0, 3) == [([0, 2, 1], 4), ([3], 0)]
    # Three rows sharing 4 tokens save 8 token computations: worth a pass at min_saved 8, not 9.
    assert shared_runs(ids, [0, 1, 2, 3], 0, 3, min_saved=8) == [([0, 2, 1], 4), ([3], 0)]
    assert shared_runs(ids, [0, 1, 2, 3], 0, 3, min_saved=9) == [([0, 2, 1], 0), ([3], 0)]
    # Within that run: rows 0 and 2 share one more token, enough at min_shared 1, not at 2.
    assert shared_runs(ids, [0, 2, 1], 4, 1) == [([0, 2], 5), ([1], 4)]
    assert shared_runs(ids, [0, 2, 1], 4, 2) == [([0], 4), ([2], 4), ([1], 4)]


def test_the_fill_computes_shared_prefixes_once_and_stores_what_each_row_computes(tiny_model_dir):
    model = _top_layer_lora(tiny_model_dir)
    g = torch.Generator().manual_seed(0)

    def tokens(n):
        return torch.randint(5, 90, (n,), generator=g).tolist()

    judge_prompt, victim_prompt = tokens(40), tokens(35)
    rows = [
        judge_prompt + tokens(10),
        judge_prompt + tokens(12),
        judge_prompt + victim_prompt + tokens(5),
        judge_prompt + victim_prompt + tokens(6),
        tokens(20),
    ]
    stored = {}
    for sharing in ((32, 0), (32, 100), (0, 0)):
        cache = FrozenLayerCache(model, 1)
        assert cache.fill(model, rows + rows[:1], batch_size=2, min_shared=sharing[0], min_saved=sharing[1]) == 5
        assert cache.fill_tokens == sum(map(len, rows))
        stored[sharing] = (cache.fill_tokens_computed, {k: v.clone() for k, v in cache._rows.items()})
        cache.remove()
    # Shared: the judge prompt once, the victim prompt once on top of it, then each row's own tokens.
    assert stored[32, 0][0] == 40 + 10 + 12 + 35 + 5 + 6 + 20
    # A pass of its own must save 100 tokens: the judge prompt saves 3 x 40, the victim prompt 35.
    assert stored[32, 100][0] == 40 + 10 + 12 + (35 + 5) + (35 + 6) + 20
    assert stored[0, 0][0] == sum(map(len, rows))
    model.eval()
    with torch.no_grad():
        for row in rows:
            alone = model(input_ids=torch.tensor([row]), output_hidden_states=True).hidden_states[1][0]
            key = torch.tensor(row).numpy().tobytes()
            for _, rows_stored in stored.values():
                assert torch.allclose(rows_stored[key], alone, atol=1e-5)


def test_layers_that_return_tuples_are_not_filled_and_train_uncached(tiny_model_dir, caplog):
    model = _top_layer_lora(tiny_model_dir)
    cache = FrozenLayerCache(model, 1)
    original = cache._originals[0]
    cache._originals[0] = lambda *a, **k: (original(*a, **k),)  # an older decoder layer's return type
    with caplog.at_level(logging.WARNING, logger="training.frozen_cache"):
        assert cache.fill(model, [[5, 6, 7, 8]]) == 0
    assert "the decoder layers return tuple, not a tensor; not filled" in caplog.text
    assert cache.stored_bytes == 0 and model.training
