import copy
import math

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from recipes.chat import render_chat
from recipes.verdict import VERDICT_PREFIX
from training.callbacks import VerdictMetricsCallback
from training.data import load_sft_data
from training.verdicts import best_threshold, compute_verdict_metrics, judge_probes, prepare_probes


@pytest.mark.parametrize(
    ("labels", "scores", "expected"),
    [
        pytest.param([1, 0, 1, 0], [0.9, 0.1, 0.8, 0.2], {"f1": 1.0, "accuracy": 1.0, "auroc": 1.0}, id="perfect"),
        pytest.param([1, 0, 1, 0], [0.1, 0.9, 0.2, 0.8], {"f1": 0.0, "accuracy": 0.0, "auroc": 0.0}, id="inverted"),
        pytest.param(
            [1, 1, 0, 0], [0.7, 0.3, 0.6, 0.1], {"precision": 0.5, "recall": 0.5, "accuracy": 0.5}, id="half"
        ),
        pytest.param(
            [1, 0, 1, 0], [0.9, None, None, 0.2], {"invalid_rate": 0.5, "f1": 1.0, "judged": 2}, id="invalid"
        ),
        pytest.param([0, 0], [0.1, 0.2], {"f1": 0.0, "accuracy": 1.0, "positive_rate": 0.0}, id="one_class"),
        pytest.param([1, 0], [None, None], {"invalid_rate": 1.0, "judged": 0}, id="all_invalid"),
    ],
)
def test_verdict_metrics(labels, scores, expected):
    metrics = compute_verdict_metrics(labels, scores)
    for name, value in expected.items():
        assert math.isclose(metrics[name], value), (name, metrics)
    if len(set(labels)) < 2 or all(s is None for s in scores):
        assert "auroc" not in metrics
    if all(s is None for s in scores):
        assert "f1" not in metrics  # an unjudged row is never scored


def test_best_threshold_recovers_a_shifted_boundary():
    labels = [1, 1, 1, 0, 0, 0]
    scores = [0.35, 0.3, 0.25, 0.2, 0.1, 0.05]  # all below 0.5: F1 0 at the default threshold
    assert compute_verdict_metrics(labels, scores)["f1"] == 0.0
    threshold, f1 = best_threshold(labels, scores)
    assert f1 == 1.0 and 0.2 < threshold <= 0.25
    assert best_threshold([1, 1], [0.2, 0.9])[0] == 0.5  # one class: nothing to tune, keep 0.5


def test_best_threshold_does_not_call_everything_positive_on_noise():
    labels = [1, 0, 0, 1, 0, 0, 1, 0]
    scores = [0.05, 0.06, 0.07, 0.08, 0.09, 0.10, 0.11, 0.12]  # no signal
    # F1 alone would pick 0.05: everything positive, F1 = 6/11.
    threshold, f1 = best_threshold(labels, scores)
    assert threshold > min(scores)
    assert sum(s >= threshold for s in scores) < len(scores)
    # Asked for F1, it does pick that threshold: the metric is the user's choice.
    assert best_threshold(labels, scores, "f1") == (0.05, pytest.approx(6 / 11))
    with pytest.raises(ValueError, match="threshold_metric"):
        best_threshold(labels, scores, "accuracy")


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_pretrained(tiny_model_dir), AutoTokenizer.from_pretrained(tiny_model_dir)


def test_batched_left_padded_verdicts_match_one_by_one(tiny, sft_dir):
    model, tokenizer = tiny
    rows = list(load_sft_data(sft_dir).validation)[:6]
    probes = prepare_probes(tokenizer, rows, {"jailbreak": ["JAILBROKEN", "SAFE"]}, max_length=1024)
    batched = judge_probes(model, probes, batch_size=4, pad_id=tokenizer.pad_token_id)
    for probe, p in zip(probes, batched):
        text = render_chat(tokenizer, probe_messages(rows, probe.id), VERDICT_PREFIX)
        ids = torch.tensor([tokenizer(text, add_special_tokens=False)["input_ids"]])
        with torch.no_grad():
            logits = model(input_ids=ids).logits[0, -1]
        pair = logits[probe.choice_ids]
        assert math.isclose(p, torch.softmax(pair, -1)[0].item(), rel_tol=1e-4, abs_tol=1e-5)


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def test_verdicts_under_bf16_autocast_keep_float32_logits_and_no_graph(tiny, sft_dir, device):
    model, tokenizer = tiny
    model = model if device == "cpu" else copy.deepcopy(model).to(device)
    rows = list(load_sft_data(sft_dir).validation)[:4]
    probes = prepare_probes(tokenizer, rows, {"jailbreak": ["JAILBROKEN", "SAFE"]}, max_length=1024)
    # An untied head with large logits, as a trained judge has them (bfloat16 rounds 40 to 1/4).
    tied = model.get_output_embeddings()
    wide = torch.nn.Linear(tied.in_features, tied.out_features, bias=False, device=device)
    with torch.no_grad():
        wide.weight.copy_(tied.weight * 200.0)
    grad_enabled, head_inputs = [], []
    model.set_output_embeddings(wide)
    hooks = [
        model.model.register_forward_pre_hook(lambda module, args: grad_enabled.append(torch.is_grad_enabled())),
        wide.register_forward_pre_hook(lambda module, args: head_inputs.append(args[0][0, -1].detach())),
    ]
    try:
        with torch.autocast(device, dtype=torch.bfloat16):
            mixed = judge_probes(model, probes, batch_size=1, pad_id=tokenizer.pad_token_id)
    finally:
        for hook in hooks:
            hook.remove()
        model.set_output_embeddings(tied)
    assert grad_enabled and not any(grad_enabled)  # judging builds no autograd graph
    order = sorted(range(len(probes)), key=lambda i: -len(probes[i].input_ids))  # one row a batch, longest first
    for i, hidden in zip(order, head_inputs):
        pair = hidden.float() @ wide.weight[probes[i].choice_ids].T
        assert math.isclose(mixed[i], torch.softmax(pair, -1)[0].item(), rel_tol=1e-4, abs_tol=1e-7)
        rounded = torch.softmax(pair.bfloat16().float(), -1)[0].item()
        assert not math.isclose(mixed[i], rounded, rel_tol=1e-3, abs_tol=1e-7)  # what bf16 logits would give


def probe_messages(rows, ident):
    row = next(r for r in rows if r["id"] == ident)
    return [m for m in row["messages"] if m["role"] != "assistant"]


def test_colliding_words_and_truncated_prompts_are_invalid_not_scored(tiny, sft_dir):
    model, tokenizer = tiny
    rows = list(load_sft_data(sft_dir).validation)[:4]
    collide = prepare_probes(tokenizer, rows, {"jailbreak": ["SAFE_A", "SAFE_B"]}, max_length=None)
    assert {p.reason for p in collide} == {"choice_collision"}
    short = prepare_probes(tokenizer, rows, {"jailbreak": ["JAILBROKEN", "SAFE"]}, max_length=20)
    assert {p.reason for p in short} == {"truncated"}
    assert judge_probes(model, collide, batch_size=2, pad_id=0) == [None] * 4


def test_callback_judges_and_reports_without_a_trainer(tiny, sft_dir):
    model, tokenizer = tiny
    rows = list(load_sft_data(sft_dir).validation)
    callback = VerdictMetricsCallback(tokenizer, rows, {"jailbreak": ["JAILBROKEN", "SAFE"]}, max_length=1024)
    model.train()
    report = callback.judge(model, step=3)
    assert model.training  # the training mode is restored
    assert report.step == 3 and len(report.p_positive) == len(rows)
    assert set(report.metrics) >= {"f1", "precision", "recall", "accuracy", "invalid_rate"}
    assert callback.last is report and 0.0 <= callback.threshold()[0] <= 1.0


def test_nan_logits_are_counted_invalid_not_scored(tiny, sft_dir, caplog):
    model, tokenizer = tiny
    model = copy.deepcopy(model)
    with torch.no_grad():
        model.get_output_embeddings().weight.fill_(float("nan"))
    rows = list(load_sft_data(sft_dir).validation)[:3]
    probes = prepare_probes(tokenizer, rows, {"jailbreak": ["JAILBROKEN", "SAFE"]}, max_length=1024)
    with caplog.at_level("WARNING", logger="training.verdicts"):
        scores = judge_probes(model, probes, batch_size=2, pad_id=tokenizer.pad_token_id)
    assert scores == [None, None, None]
    assert "3 of 3 verdicts are not finite" in caplog.text
    metrics = compute_verdict_metrics([p.label for p in probes], scores)
    assert metrics["invalid_rate"] == 1.0 and "f1" not in metrics


def test_thresholds_per_category_are_chosen_on_each_categorys_rows(tiny, make_sft_dir):
    model, tokenizer = tiny
    folder = make_sft_dir(n_validation=16, categories=("jailbreak", "malware"))
    rows = list(load_sft_data(folder).validation)
    words = {"jailbreak": ["JAILBROKEN", "SAFE"], "malware": ["MALICIOUS", "BENIGN"]}
    callback = VerdictMetricsCallback(tokenizer, rows, words, max_length=1024)
    assert callback.thresholds_by_category() == {}  # nothing judged yet
    report = callback.judge(model, step=1)
    chosen = callback.thresholds_by_category("f1")
    assert set(chosen) == {"jailbreak", "malware"}
    for category, threshold in chosen.items():
        index = [i for i, p in enumerate(callback.probes) if p.category == category]
        labels = [callback.probes[i].label for i in index]
        assert threshold == best_threshold(labels, [report.p_positive[i] for i in index], "f1")[0]
