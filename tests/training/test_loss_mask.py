"""Only the verdict answer carries loss, the end-of-turn token included; the fast LM head is exact."""

import pytest
import torch
from peft import LoraConfig
from transformers import AutoTokenizer

from training.chat_template import ChatTemplateError, install_training_template
from training.configs import JudgeSFTConfig
from training.data import load_sft_data
from training.trainer import JudgeSFTTrainer


def _trainer(model_dir, data_dir, out, *, answer_only_head=True, **config):
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    install_training_template(tokenizer)
    data = load_sft_data(data_dir)
    args = JudgeSFTConfig(
        output_dir=str(out), report_to="none", eval_strategy="no", eval_on_start=False, max_steps=1, **config
    )
    return JudgeSFTTrainer(
        model=model_dir,
        args=args,
        train_dataset=data.train.select_columns(["messages"]),
        processing_class=tokenizer,
        peft_config=LoraConfig(r=4, target_modules="all-linear", task_type="CAUSAL_LM"),
        answer_only_head=answer_only_head,
    ), data


def test_only_the_verdict_and_end_of_turn_carry_loss(tiny_model_dir, sft_dir, tmp_path):
    trainer, data = _trainer(tiny_model_dir, sft_dir, tmp_path)
    tokenizer = trainer.processing_class
    for i in range(len(data.train)):
        row = trainer.train_dataset[i]
        trained = [t for t, label in zip(row["input_ids"], row["labels"]) if label != -100]
        answer = data.train[i]["messages"][-1]["content"]
        assert tokenizer.decode(trained) == answer + "<|im_end|>"
        # The trained span is one contiguous block at the very end, closed by the end-of-turn token.
        first = next(k for k, label in enumerate(row["labels"]) if label != -100)
        assert all(label != -100 for label in row["labels"][first:-1])
        assert trained[-1] == tokenizer.convert_tokens_to_ids("<|im_end|>")
        assert tokenizer.decode(row["input_ids"][:first]).endswith("<|im_start|>assistant\n")


def test_training_template_renders_like_the_models_own(tiny_model_dir, sft_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    messages = load_sft_data(sft_dir).train[0]["messages"]
    before = tokenizer.apply_chat_template(messages, tokenize=False)
    original = install_training_template(tokenizer)
    assert original is not None and "{% generation" not in original
    assert tokenizer.apply_chat_template(messages, tokenize=False) == before


def test_template_without_known_marked_variant_is_refused(tiny_model_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    tokenizer.chat_template = "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}"
    with pytest.raises(ChatTemplateError, match="chat_template_path"):
        install_training_template(tokenizer)
    tokenizer.chat_template = None
    with pytest.raises(ChatTemplateError, match="expected a chat template"):
        install_training_template(tokenizer)


def test_answer_only_head_gives_trls_loss_and_gradients(tiny_model_dir, sft_dir, tmp_path):
    results = []
    for fast in (True, False):
        trainer, _ = _trainer(tiny_model_dir, sft_dir, tmp_path / str(fast), answer_only_head=fast)
        assert trainer.answer_only_head is fast
        batch = trainer.data_collator([trainer.train_dataset[i] for i in range(2)])
        batch = {k: v.to(trainer.args.device) for k, v in batch.items()}
        trainer.model.train()
        loss = trainer.compute_loss(trainer.model, dict(batch))
        loss.backward()
        grads = {n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
        results.append((loss.detach(), grads))
    (fast_loss, fast_grads), (trl_loss, trl_grads) = results
    assert torch.allclose(fast_loss, trl_loss, rtol=1e-5, atol=1e-6)
    assert fast_grads.keys() == trl_grads.keys()
    for name in fast_grads:
        assert torch.allclose(fast_grads[name], trl_grads[name], rtol=1e-4, atol=1e-6), name
