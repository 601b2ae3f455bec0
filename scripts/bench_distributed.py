"""Time one evaluation in one process and split across processes by ``accelerate launch``, in one run.

    python scripts/bench_distributed.py --out /tmp/bench-dist           # scaled-down paper recipe
    python scripts/bench_distributed.py --recipe recipes/runs/quickstart.yaml --limit 5 --models ""

Each configuration runs the same recipe (scaled down with ``--limit/--models/--max-new-tokens``) into
its own fresh folder, one after the other, with the machine's cores shared out evenly (one process:
all threads; N processes: threads / N each). The table: wall time, each rank's busy time and predicted
cost (from ``run.json``), the balance of busy time (largest over smallest, minus one) and whether the
merged records equal the one-process run's. Time it alone: other work on the cores skews the ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--recipe", default="recipes/runs/paper.yaml")
    parser.add_argument("--data-root", default="../shared/data")
    parser.add_argument("--models", default="smollm2-135m", help="--models of the scale-down ('' keeps them)")
    parser.add_argument("--limit", type=int, default=3)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="cores shared by all processes")
    parser.add_argument("--out", required=True, help="a new folder: one run folder per configuration")
    return parser.parse_args()


def _command(args: argparse.Namespace, out: Path, processes: int) -> list[str]:
    command = ["-m", "judgeforge.cli", "eval", args.recipe, "--out", str(out), "--data-root", args.data_root]
    command += ["--limit", str(args.limit), "--max-new-tokens", str(args.max_new_tokens)]
    if args.models:
        command += ["--models", args.models]
    if processes == 1:
        return [sys.executable, *command]
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes)]
    launch += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    threads = str(max(1, args.threads // processes))
    launch += ["--main_process_port", str(port), "--num_cpu_threads_per_process", threads]
    return [*launch, *command]


def main() -> int:
    args = parse_args()
    from evaluation.distributed import balance
    from evaluation.store import read_results, record_key

    root = Path(args.out)
    if root.exists():
        print(f"{root}: exists; give a new folder (nothing is overwritten)", file=sys.stderr)
        return 2
    root.mkdir(parents=True)
    rows, baseline = [], None
    for processes in args.processes:
        out = root / f"p{processes}"
        env = {**os.environ, "OMP_NUM_THREADS": str(max(1, args.threads // processes)), "CUDA_VISIBLE_DEVICES": ""}
        started = time.monotonic()
        result = subprocess.run(_command(args, out, processes), cwd=ROOT, env=env, check=False)
        wall = time.monotonic() - started
        if result.returncode != 0:
            print(f"{processes} processes: exit {result.returncode}", file=sys.stderr)
            return 1
        finished = json.loads((out / "run.json").read_text())["finished"]
        records = {record_key(r): (r["label"], r["status"], r.get("p_positive")) for r in read_results(out)}
        baseline = baseline if baseline is not None else records
        ranks = finished["ranks"]
        busy = [r["busy_s"] for r in ranks]
        rows.append((processes, wall, busy, [r["cost"] for r in ranks], finished["judged"], records == baseline))
    one = rows[0][1]
    print("| processes | wall s | vs 1 process | busy s per rank | predicted cost per rank | busy balance | "
          "judged | records equal |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for processes, wall, busy, cost, judged, equal in rows:
        print(
            f"| {processes} | {wall:.0f} | {one / wall:.2f}x | {' / '.join(f'{b:.0f}' for b in busy)} | "
            f"{' / '.join(f'{c:.0f}' for c in cost)} | {balance(busy):.1%} | {judged} | {'yes' if equal else 'NO'} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
