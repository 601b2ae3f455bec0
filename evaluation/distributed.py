"""A run's plan split across the processes of ``accelerate launch``: who judges what, and waiting.

``accelerate launch --num_processes N -m judgeforge.cli eval RUN.yaml --out DIR`` starts N copies of
the same run. Each reads the same recipe and data, cuts the plan into work units (a judge on one
category, every repeat of it when the judge is computed once, else one repeat) and keeps the units
:func:`assign` gives its rank. Nothing is sent between processes but three waits and one gather:

1. rank 0 opens the store (taking the folder's lock and repairing every rank's file) and writes
   ``run.json``; then the others open theirs (:mod:`evaluation.store`: one file per rank);
2. after the first-level judges every rank rereads the others' files, so the second-level reviews
   (and the choice of the ``best`` judge to review) see every verdict, wherever it was computed;
3. after the reviews rank 0 gathers the counts and busy times and finishes ``run.json``.

Units are balanced by estimated cost, not count: the examples' judged tokens (each field cut to the
judge's budget, a generated token weighted as :data:`GENERATED_TOKEN_COST` read ones) times the
model's size. Reference judges run on rank 0. A rank runs its units in plan order, so each model
it needs is loaded once. A rerun with any number of processes plans only what no rank finished.

Devices: with GPUs, each process of a node gets its share of them through ``CUDA_VISIBLE_DEVICES``
(8 GPUs, 8 processes: one each; 4 processes: two each, for a model that spans two GPUs with
``device_map`` or vLLM's ``tensor_parallel_size``), set before anything touches CUDA.
"""

from __future__ import annotations

import logging
import math
import os
import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from evaluation import registry
from evaluation.types import JudgeSpec
from recipes.prompts import FieldBudget
from recipes.schema import prompt_text


__all__ = [
    "GENERATED_TOKEN_COST",
    "Ranks",
    "Unit",
    "assign",
    "balance",
    "current_ranks",
    "example_cost",
    "model_size",
    "node_gpus",
    "single_process_env",
]

logger = logging.getLogger(__name__)

# A generated token costs about this many read ones: decoding runs one position per step over the
# whole cache, where reading a prompt runs thousands of positions in one pass.
GENERATED_TOKEN_COST = 8.0
_TEMPLATE_TOKENS = 150  # what a judge prompt adds around the judged fields
_WAIT = timedelta(hours=float(os.environ.get("JUDGEFORGE_WAIT_HOURS", "24")))  # the longest a rank waits


@dataclass(frozen=True)
class Unit:
    """One piece of the plan: a judge on a category, for one repeat or (``None``) every repeat."""

    judge: str
    category: str
    repeat: int | None
    cost: float
    order: tuple[int, int, int]  # (judge, category, repeat) in plan order: a rank runs its units so
    reference: bool = False


@dataclass(frozen=True)
class Ranks:
    """This process's place among the run's processes (one process: rank 0 of 1)."""

    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        """Rank 0: the process that locks the folder and writes ``run.json``."""
        return self.rank == 0

    def wait(self) -> None:
        """Every process reaches this point before any goes on."""
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()

    def gather(self, value: Any) -> list[Any]:
        """``value`` of every rank, in rank order (picklable values only)."""
        if self.world == 1:
            return [value]
        import torch.distributed as dist

        values: list[Any] = [None] * self.world
        dist.all_gather_object(values, value)
        return values


# What torchrun / accelerate set for the processes they start; a child launched from one of them
# (training, under its own `accelerate launch`) must not inherit them.
_LAUNCH_VARIABLES = (
    "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK", "GROUP_WORLD_SIZE", "ROLE_RANK",
    "ROLE_NAME", "ROLE_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_RUN_ID",
)  # fmt: skip
_NODE_GPUS: list[str] | None = None  # the node's GPUs before this process took its share


def current_ranks(*, share_gpus: bool = True) -> Ranks:
    """The ranks ``accelerate launch`` (or torchrun) set in the environment; one process without them.

    The processes meet over gloo (they exchange only small Python objects); with ``share_gpus`` each
    takes its share of the node's GPUs before CUDA starts (see the module docstring).
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Ranks()
    rank = int(os.environ.get("RANK", "0"))
    if share_gpus:
        _share_gpus(int(os.environ.get("LOCAL_RANK", "0")), int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("gloo", rank=rank, world_size=world, timeout=_WAIT)
    return Ranks(rank, world)


def _visible_gpus() -> list[str]:
    """The GPUs this node shows, without starting CUDA (``CUDA_VISIBLE_DEVICES``, else ``nvidia-smi``)."""
    given = os.environ.get("CUDA_VISIBLE_DEVICES")
    if given is not None:
        return [d for d in given.split(",") if d.strip()]
    if not shutil.which("nvidia-smi"):
        return []
    listed = subprocess.run(["nvidia-smi", "--list-gpus"], capture_output=True, text=True, check=False)
    return [str(i) for i, line in enumerate(listed.stdout.splitlines()) if line.startswith("GPU")]


def node_gpus() -> list[str]:
    """The GPUs of this node, as the launcher gave them (before any share was taken)."""
    return list(_NODE_GPUS) if _NODE_GPUS is not None else _visible_gpus()


def single_process_env() -> dict[str, str]:
    """This environment without the launcher's ranks, and with every GPU of the node: for a child launch."""
    env = {k: v for k, v in os.environ.items() if k not in _LAUNCH_VARIABLES and not k.startswith("ACCELERATE_")}
    if _NODE_GPUS is not None:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(_NODE_GPUS)
    return env


def _share_gpus(local_rank: int, local_world: int) -> None:
    global _NODE_GPUS
    if _NODE_GPUS is not None:
        return  # taken once
    gpus = _visible_gpus()
    if local_world <= 1 or not gpus:
        return
    _NODE_GPUS = gpus
    if len(gpus) < local_world:
        logger.warning("%d processes share %d GPUs on this node: some share one", local_world, len(gpus))
        mine = [gpus[local_rank % len(gpus)]]
    else:
        per = len(gpus) // local_world
        mine = gpus[local_rank * per : (local_rank + 1) * per]
    os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(mine)


# ----------------------------------------------------------------------------------------------
# Cost
# ----------------------------------------------------------------------------------------------

_SIZE_IN_NAME = re.compile(r"(?<![a-z0-9.])(\d+(?:\.\d+)?)\s*([bm])(?![a-z])", re.IGNORECASE)


def model_size(spec: JudgeSpec) -> float:
    """Billions of parameters, roughly: from a local folder's weight files, else the name ("7B", "135M").

    A hosted API or a name without a size counts as 1; reference judges as nearly nothing.
    """
    if spec.backend == registry.judge_kind(registry.REFERENCE).backend:
        return 0.001
    from recipes.models import ALIASES

    if spec.model in ALIASES:
        return ALIASES[spec.model].params_b
    folder = Path(spec.model).expanduser()
    if folder.is_dir():
        card = folder / "judge.json"
        weights = sum(p.stat().st_size for p in folder.glob("*") if p.suffix in (".safetensors", ".bin", ".gguf"))
        if card.is_file() and (folder / "adapter_config.json").is_file():
            from recipes.judge_card import JudgeCard

            base = JudgeCard.read(folder).base_model
            return model_size(JudgeSpec(model=base, prompt=spec.prompt, backend=spec.backend)) if base else 1.0
        if weights:
            return weights / 2e9  # 16-bit weights: two bytes a parameter
    found = _SIZE_IN_NAME.findall(Path(spec.model).name)
    if found:
        number, unit = found[-1]
        return float(number) / (1000.0 if unit.lower() == "m" else 1.0)
    return 1.0


def _generates(spec: JudgeSpec) -> bool:
    """Whether the verdict is generated (cot, or a backend that cannot read logits) or read in one pass."""
    if spec.prompt == "cot" or spec.options.get("read") == "generate":
        return True
    return not registry.backend(spec.backend).local


def example_cost(example: Mapping[str, Any], spec: JudgeSpec, budget: FieldBudget | None = None) -> float:
    """Estimated tokens one judgment of ``example`` costs ``spec`` (before the model's size)."""
    budget = (budget or FieldBudget()).for_category(str(example.get("category", "")))
    prompt = example.get("prompt", "")
    chars = min(len(prompt if isinstance(prompt, str) else prompt_text(prompt)), budget.prompt_chars)
    chars += min(len(str(example.get("response", ""))), budget.response_chars)
    context = example.get("context")
    chars += min(len(str(context)), budget.context_chars) if context else 0
    tokens = chars / 4 + _TEMPLATE_TOKENS
    if _generates(spec):
        tokens += GENERATED_TOKEN_COST * spec.max_new_tokens
    return tokens


# ----------------------------------------------------------------------------------------------
# Assignment
# ----------------------------------------------------------------------------------------------


def assign(units: Sequence[Unit], world: int) -> list[list[Unit]]:
    """Split ``units`` across ``world`` ranks, each share in plan order.

    Reference units go to rank 0, the rest largest first to the least loaded rank (ties: the lower
    rank). Deterministic: every process computes the same split from the same plan.
    """
    shares: list[list[Unit]] = [[] for _ in range(world)]
    load = [0.0] * world
    for unit in units:
        if unit.reference:
            shares[0].append(unit)
            load[0] += unit.cost
    for unit in sorted((u for u in units if not u.reference), key=lambda u: (-u.cost, u.order)):
        rank = min(range(world), key=lambda r: (load[r], r))
        shares[rank].append(unit)
        load[rank] += unit.cost
    return [sorted(share, key=lambda u: u.order) for share in shares]


def balance(costs: Sequence[float]) -> float:
    """The largest share over the smallest minus one (0: even); ``inf`` when a rank has nothing."""
    low = min(costs)
    return math.inf if low <= 0 else max(costs) / low - 1.0
