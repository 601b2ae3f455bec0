"""Training configuration: judgeforge's own arguments plus TRL's SFT and model configs.

``judgeforge train CONFIG.yaml`` parses the three dataclasses below with ``trl.TrlParser``: the YAML
file sets the defaults, command-line flags override them and unknown keys are rejected. TRL's
classes are subclassed only to change defaults that are wrong for a judge (a few answer tokens
after a long prompt) or that fail on a CPU machine; every changed default is listed in the class
docstring.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import torch
from trl import ModelConfig, SFTConfig

from recipes.models import fast_bf16


__all__ = ["JudgeArguments", "JudgeModelConfig", "JudgeSFTConfig", "deepspeed_requested"]


def deepspeed_requested(training_args: Any) -> bool:
    """``--deepspeed``, ``accelerate launch`` with a DeepSpeed config, or a DeepSpeed plugin already built."""
    return (
        getattr(training_args, "deepspeed_plugin", None) is not None
        or bool(training_args.deepspeed)
        or os.environ.get("ACCELERATE_USE_DEEPSPEED") == "true"
    )


@dataclass
class JudgeArguments:
    """What judgeforge adds to TRL: the judge data set, the verdict metrics and tracking.

    Parameters that control the data:
        data_dir: folder written by ``judgeforge data build`` (holds ``sft/`` and ``data_card.json``).
        data_recipe: the data recipe that builds ``data_dir`` when it does not exist yet, so that a
            config runs on a fresh clone without a separate ``judgeforge data build``.
        data_root: folder the data recipe's source paths are read from (the shared real data).
        categories: train only on these categories (default: every category in the data set).
        categories_dirs: extra folders of category YAML files, for categories that are not built in.
        train_rows: use at most this many training rows (a fixed, seeded subsample; CPU runs).
        sources: train (and validate) only on rows of these sources: a judge tuned on one source of a
            mixture, the baseline a mixture judge must beat on sources neither saw.
        balance: how the ``train_rows`` budget is spread: ``category`` (round-robin over categories) or
            ``source_label`` (round-robin over category x source x label cells, so a mixture's small
            sources and its rarer label are not drowned by the large ones).

    Parameters that control the model:
        lora_layers: put LoRA adapters on the top N transformer layers only. The backward pass then
            stops at the lowest adapted layer, which is most of the cost of a CPU run.
        answer_only_head: project only the positions that carry loss through the LM head. A judge's
            loss sits on a dozen answer tokens after hundreds of prompt tokens, and TRL's fused head
            scores every position on machines without Triton (CPUs).
        cache_frozen_layers: with ``lora_layers``, store each training row's output of the frozen
            layers below the adapters before the first step and replay it in every epoch, so an epoch
            runs only the adapted layers (memory: rows x tokens x hidden size x 4 bytes).
        verdict_loss_only: put the loss on the verdict token alone instead of the whole answer
            (the format tokens are learnt in a few steps and then dilute the verdict's gradient).
        consistency_weight: with attack-augmented training rows, batch each copy beside its clean
            row and add this weight x their disagreement in P(verdict) to the loss
            (:mod:`training.consistency`); the flip rate under attack measures that disagreement.

    Parameters that control the verdict metrics (see :mod:`training.callbacks`):
        verdict_eval_rows: size of the fixed validation subset judged at every evaluation (0: off).
        verdict_eval_batch_size: batch size of that judging pass.
        verdict_table_rows: how many sample verdicts go to the W&B table at each evaluation.
        eval_loss: also compute the loss on the same subset (one more forward pass per evaluation).
        tune_threshold: after training, choose the P(positive) threshold that maximises
            ``threshold_metric`` on the subset and record it in ``judge.json``.
        threshold_per_category: also choose one threshold per category on its own validation rows
            (categories differ in base rate and in how sure the judge is); ``judge.json`` keeps both.
        threshold_metric: ``mcc`` (default: on few rows the F1-best threshold tends to call everything
            positive) or ``f1`` (the metric judges are ranked by, for a validation split of a few hundred rows).

    Parameters that control tracking and the machine:
        wandb_project: W&B project (used when ``report_to`` includes ``wandb``).
        wandb_tags: W&B tags.
        cpu_threads: intra-op threads for CPU training (default: torch's choice, one per core). On
            a CPU shared with other jobs, OpenMP threads spin-wait for each other and one thread
            can be several times faster than two.
    """

    data_dir: str | None = field(
        default=None, metadata={"help": "Folder written by `judgeforge data build` (holds sft/ and data_card.json)."}
    )
    data_recipe: str | None = field(
        default=None, metadata={"help": "Data recipe that builds `data_dir` when it does not exist yet."}
    )
    data_root: str | None = field(
        default=None, metadata={"help": "Folder the data recipe's source paths are read from (e.g. ../shared/data)."}
    )
    categories: list[str] | None = field(
        default=None, metadata={"help": "Train only on these categories (default: all in the data set)."}
    )
    categories_dirs: list[str] | None = field(
        default=None, metadata={"help": "Extra folders of category YAML files (for categories not built in)."}
    )
    train_rows: int | None = field(
        default=None, metadata={"help": "Use at most this many training rows (fixed seeded subsample)."}
    )
    sources: list[str] | None = field(
        default=None, metadata={"help": "Train and validate only on rows of these sources (default: all)."}
    )
    balance: str = field(
        default="category",
        metadata={
            "help": "Spread `train_rows` over categories ('category') or category x source x label ('source_label').",
            "choices": ["category", "source_label"],
        },
    )
    lora_layers: int | None = field(
        default=None,
        metadata={"help": "Adapt only the top N transformer layers with LoRA (default: all layers)."},
    )
    answer_only_head: bool = field(
        default=True,
        metadata={"help": "Compute the LM head only at positions that carry loss (the answer tokens)."},
    )
    cache_frozen_layers: bool = field(
        default=False,
        metadata={"help": "Run the frozen layers below `lora_layers` once per training row, not once per epoch."},
    )
    verdict_loss_only: bool = field(
        default=False,
        metadata={"help": "Loss on the verdict token alone (default: on every answer token)."},
    )
    consistency_weight: float = field(
        default=0.0,
        metadata={"help": "Weight of the clean-row/perturbed-copy disagreement in the loss (0: off)."},
    )
    verdict_eval_rows: int = field(
        default=64, metadata={"help": "Fixed validation subset judged at every evaluation (0 turns it off)."}
    )
    verdict_eval_batch_size: int = field(default=8, metadata={"help": "Batch size of the verdict judging pass."})
    verdict_table_rows: int = field(
        default=16, metadata={"help": "Sample verdicts logged to the W&B table at each evaluation."}
    )
    eval_loss: bool = field(
        default=True,
        metadata={"help": "Also compute the eval loss on the verdict subset (one more forward pass per evaluation)."},
    )
    tune_threshold: bool = field(
        default=True,
        metadata={
            "help": "Choose the threshold that maximises `threshold_metric` on validation (stored in judge.json)."
        },
    )
    threshold_per_category: bool = field(
        default=False,
        metadata={"help": "Also choose a threshold per category on its validation rows (stored in judge.json)."},
    )
    threshold_metric: str = field(
        default="mcc",
        metadata={"help": "What the tuned threshold maximises: 'mcc' (default) or 'f1'.", "choices": ["mcc", "f1"]},
    )
    wandb_project: str = field(default="judgeforge", metadata={"help": "W&B project (when report_to has wandb)."})
    wandb_tags: list[str] | None = field(default=None, metadata={"help": "W&B tags."})
    cpu_threads: int | None = field(
        default=None,
        metadata={"help": "Intra-op threads for CPU training (default: one per core; 1 is faster on a busy CPU)."},
    )

    def __post_init__(self):
        for name in ("train_rows", "lora_layers", "cpu_threads"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"<config>: field '{name}': expected a positive integer or null, got {value!r}")
        for name in ("verdict_eval_rows", "verdict_table_rows"):
            if getattr(self, name) < 0:
                raise ValueError(f"<config>: field '{name}': expected 0 or more, got {getattr(self, name)!r}")
        if not self.consistency_weight >= 0:
            got = self.consistency_weight
            raise ValueError(f"<config>: field 'consistency_weight': expected 0 or more, got {got!r}")
        if self.balance not in ("category", "source_label"):
            raise ValueError(f"<config>: field 'balance': expected category or source_label, got {self.balance!r}")
        if self.threshold_metric not in ("mcc", "f1"):
            # Checked here too: a value from a YAML config bypasses argparse's choices.
            raise ValueError(f"<config>: field 'threshold_metric': expected mcc or f1, got {self.threshold_metric!r}")
        if self.verdict_eval_batch_size < 1:
            got = self.verdict_eval_batch_size
            raise ValueError(f"<config>: field 'verdict_eval_batch_size': expected a positive integer, got {got!r}")


@dataclass
class JudgeSFTConfig(SFTConfig):
    """TRL's ``SFTConfig`` with defaults for training judges.

    Defaults that differ from TRL's ``SFTConfig``:
        - ``assistant_only_loss``: ``True`` instead of ``False``. Only the verdict answer (and the
          end-of-turn token) carries loss; the prompt is context, not a target.
        - ``bf16``: ``None`` means bf16 mixed precision where the machine computes bf16 natively (a
          CUDA device that supports it, or, with no GPU, a CPU with AVX-512 BF16 / AMX, where it is
          about 1.7x faster than float32 for LoRA training), instead of always (TRL's default fails
          on other CPUs; DeepSpeed on a CPU stays in float32). bf16 without a GPU sets ``use_cpu``,
          which transformers requires.
        - ``gradient_checkpointing``: ``None`` instead of ``True``, so ``activation_checkpointing``
          (default off) decides. A 135M model needs no checkpointing and recomputing the forward
          pass costs a third of a CPU step; GPU recipes switch it on.
        - ``learning_rate``: ``2e-4`` instead of ``2e-5`` (a LoRA rate; full fine-tunes set ~1e-5).
        - ``train_sampling_strategy``: ``group_by_length`` instead of ``random``: batches of similar
          length waste little padding.
        - ``logging_steps``: ``5`` instead of ``10`` (judge runs are short).
        - ``eval_strategy``: ``epoch`` instead of ``no``, and ``eval_on_start`` on whenever evaluation
          is: the verdict metrics before training are the baseline that shows whether tuning helped.
        - ``save_steps``: ``50`` instead of ``500`` and ``save_total_limit`` ``2``: short runs still
          leave a checkpoint to resume from.
    """

    learning_rate: float = field(default=2e-4, metadata={"help": "The initial learning rate for AdamW."})
    assistant_only_loss: bool = field(
        default=True,
        metadata={"help": "Compute the loss only on the assistant answer (the verdict and its end-of-turn token)."},
    )
    bf16: bool | None = field(
        default=None,
        metadata={"help": "bf16 mixed precision. Default: on where bf16 is native (recent GPUs, AVX-512 BF16 CPUs)."},
    )
    gradient_checkpointing: bool | None = field(
        default=None, metadata={"help": "Deprecated alias of `activation_checkpointing` (default off)."}
    )
    train_sampling_strategy: str = field(
        default="group_by_length",
        metadata={
            "help": "Sampler for training: 'random', 'sequential', 'group_by_length' (default) or 'batch_rebalance'.",
            "choices": ["random", "sequential", "group_by_length", "batch_rebalance"],
        },
    )
    logging_steps: float = field(default=5, metadata={"help": "Log every X update steps."})
    eval_strategy: str = field(
        default="epoch", metadata={"help": "When to evaluate: 'no', 'steps' or 'epoch' (default)."}
    )
    eval_on_start: bool | None = field(
        default=None,
        metadata={"help": "Evaluate before training: baseline verdict metrics (default: on when evaluating)."},
    )
    save_steps: float = field(default=50, metadata={"help": "Save a checkpoint every X update steps."})
    save_total_limit: int | None = field(default=2, metadata={"help": "Keep at most this many checkpoints."})

    def __post_init__(self):
        if self.eval_on_start is None:
            self.eval_on_start = str(self.eval_strategy) not in ("no", "IntervalStrategy.NO")
        gpu = torch.cuda.is_available() and not self.use_cpu
        # DeepSpeed (--deepspeed or `accelerate launch` with a DeepSpeed config) on a CPU runs through
        # its own accelerator, which refuses use_cpu: float32 there.
        deepspeed = deepspeed_requested(self)
        if self.bf16 is None and not self.fp16:
            self.bf16 = fast_bf16("cuda") if gpu else fast_bf16("cpu") and not deepspeed
        if self.bf16 and not gpu and not deepspeed:
            self.use_cpu = True
        super().__post_init__()


@dataclass
class JudgeModelConfig(ModelConfig):
    """TRL's ``ModelConfig`` with LoRA on by default.

    Defaults that differ from TRL's ``ModelConfig``:
        - ``use_peft``: ``True`` instead of ``False`` (LoRA; set ``false`` for a full fine-tune).
        - ``lora_target_modules``: ``all-linear`` instead of PEFT's per-architecture default
          (attention projections only).
    """

    use_peft: bool = field(default=True, metadata={"help": "Train a LoRA adapter (false: full fine-tuning)."})
    lora_target_modules: list[str] | None = field(
        default_factory=lambda: ["all-linear"],
        metadata={"help": "LoRA target modules (default: all-linear)."},
    )
