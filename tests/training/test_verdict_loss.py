"""Loss on the verdict token only: which ids are verdict tokens, and what the collator keeps."""

import pytest
import torch
from transformers import AutoTokenizer

from recipes.categories import load_category
from recipes.verdict import render_target
from training.verdict_loss import VerdictOnlyCollator, verdict_token_ids


NAMES = ("jailbreak", "malware", "over_refusal", "hallucination")


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    return AutoTokenizer.from_pretrained(tiny_model_dir)


def _pad(examples):
    width = max(len(e["input_ids"]) for e in examples)
    ids = torch.zeros((len(examples), width), dtype=torch.long)
    labels = torch.full((len(examples), width), -100)
    for r, e in enumerate(examples):
        ids[r, : len(e["input_ids"])] = torch.tensor(e["input_ids"])
        labels[r, : len(e["labels"])] = torch.tensor(e["labels"])
    return {"input_ids": ids, "labels": labels}


def _row(tokenizer, category, label):
    prompt = tokenizer("<|im_start|>user\nSome transcript to judge.<|im_end|>\n<|im_start|>assistant\n")["input_ids"]
    answer = tokenizer(render_target(category.positive, category.negative, label) + "<|im_end|>")["input_ids"]
    return {"input_ids": prompt + answer, "labels": [-100] * len(prompt) + answer}, answer


def test_verdict_ids_are_where_the_two_answers_part(tokenizer):
    categories = [load_category(n) for n in NAMES]
    ids = verdict_token_ids(tokenizer, {c.name: c.verdict_words for c in categories})
    expected = set()
    for category in categories:
        yes = tokenizer(render_target(category.positive, category.negative, 1))["input_ids"]
        no = tokenizer(render_target(category.positive, category.negative, 0))["input_ids"]
        split = next(i for i, (a, b) in enumerate(zip(yes, no)) if a != b)
        assert yes[:split] == no[:split]
        expected.update((yes[split], no[split]))
    assert ids == expected
    assert not set(tokenizer('{"verdict": "')["input_ids"]) & ids  # the answer prefix holds no verdict token


def test_collator_keeps_only_each_rows_verdict_label(tokenizer):
    categories = [load_category(n) for n in NAMES]
    ids = verdict_token_ids(tokenizer, {c.name: c.verdict_words for c in categories})
    rows = [_row(tokenizer, c, i % 2) for i, c in enumerate(categories)]
    batch = VerdictOnlyCollator(_pad, ids, tokenizer)([r for r, _ in rows])
    for r, (_, answer) in enumerate(rows):
        kept = (batch["labels"][r] != -100).nonzero().flatten().tolist()
        assert len(kept) == 1
        assert int(batch["labels"][r, kept[0]]) == next(t for t in answer if t in ids)
        assert int(batch["labels"][r, kept[0]]) == int(batch["input_ids"][r, kept[0]])


def test_a_row_without_a_verdict_token_is_an_error(tokenizer):
    ids = verdict_token_ids(tokenizer, {"jailbreak": load_category("jailbreak").verdict_words})
    row = {"input_ids": [1, 2, 3], "labels": [-100, 2, 3]}
    with pytest.raises(ValueError, match="row 0: field 'labels': expected a verdict token"):
        VerdictOnlyCollator(_pad, ids, tokenizer)([row])


def test_training_with_verdict_loss_only_labels_one_token_a_row(train, run_argv, tmp_path, monkeypatch):
    kept = []
    original = VerdictOnlyCollator.__call__

    def spy(self, examples):
        batch = original(self, examples)
        kept.extend((batch["labels"] != -100).sum(dim=1).tolist())
        return batch

    monkeypatch.setattr(VerdictOnlyCollator, "__call__", spy)
    out = train(run_argv("--verdict_loss_only", "true", output_dir=tmp_path / "v"))
    assert (out / "judge.json").is_file()
    assert len(kept) >= 24 and set(kept) == {1}  # 6 steps x 4 rows, each with one labelled token


def test_the_verdict_loss_is_the_cross_entropy_among_verdict_tokens(tiny_model_dir, sft_dir, tmp_path):
    from peft import LoraConfig

    from training.chat_template import install_training_template
    from training.configs import JudgeSFTConfig
    from training.data import load_sft_data
    from training.trainer import JudgeSFTTrainer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    install_training_template(tokenizer)
    data = load_sft_data(sft_dir)
    ids = verdict_token_ids(tokenizer, data.verdict_words)
    args = JudgeSFTConfig(output_dir=str(tmp_path), report_to="none", eval_strategy="no", max_steps=1, bf16=False)
    trainer = JudgeSFTTrainer(
        model=tiny_model_dir,
        args=args,
        train_dataset=data.train.select_columns(["messages"]),
        processing_class=tokenizer,
        peft_config=LoraConfig(r=4, target_modules="all-linear", task_type="CAUSAL_LM", init_lora_weights=False),
        verdict_ids=ids,
    )
    assert trainer.answer_only_head
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(3)])
    batch = {k: v.to(trainer.args.device) for k, v in batch.items()}
    trainer.model.train()
    loss = trainer.compute_loss(trainer.model, dict(batch))
    with torch.no_grad():
        logits = trainer.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
    choices = sorted(ids)
    expected = []
    for row in range(3):
        position = int((batch["labels"][row] != -100).nonzero()[0])
        among = logits[row, position - 1, choices]
        target = choices.index(int(batch["labels"][row, position]))
        expected.append(torch.nn.functional.cross_entropy(among[None], torch.tensor([target], device=among.device)))
    assert torch.allclose(loss.detach(), torch.stack(expected).mean(), rtol=1e-4, atol=1e-6)
