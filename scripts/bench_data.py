"""Benchmark the data layer: build the three real-data recipes (gptfuzz, halueval, xstest) together.

Usage:
    python scripts/bench_data.py --data-root ../shared/data
    python scripts/bench_data.py --data-root ../shared/data --out runs/bench-data --repeats 3

Each recipe is built end to end as ``judgeforge data build`` does it (read and validate the
sources, deduplicate, split, render the SFT conversations, save both data sets and the card);
the table shows rows in, seconds and rows per second per recipe and in total (the fastest of
``--repeats`` runs). About 11,400 rows in all; the goal is well under 30 s on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from pathlib import Path


REPO = Path(__file__).resolve().parents[1]
RECIPES = ("gptfuzz", "halueval", "xstest")


def main(data_root: str, out: str | None, repeats: int) -> None:
    os.environ.setdefault("TQDM_DISABLE", "1")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    from recipes.builders import build_from_file

    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(out or scratch)
        results = []
        for name in RECIPES:
            best, card = float("inf"), None
            for _ in range(repeats):
                start = time.perf_counter()
                card = build_from_file(REPO / "recipes" / "data" / f"{name}.yaml", folder / name, data_root=data_root)
                best = min(best, time.perf_counter() - start)
            rows = sum(source["rows_read"] for reports in card.sources.values() for source in reports)
            results.append((name, rows, card.total(), best))
    print(f"{'recipe':<10} {'rows read':>10} {'examples':>9} {'seconds':>8} {'rows/s':>9}")
    for name, rows, kept, seconds in results:
        print(f"{name:<10} {rows:>10,} {kept:>9,} {seconds:>8.2f} {rows / seconds:>9,.0f}")
    rows, kept, seconds = (sum(r[i] for r in results) for i in (1, 2, 3))
    print(f"{'total':<10} {rows:>10,} {kept:>9,} {seconds:>8.2f} {rows / seconds:>9,.0f}")


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default=str(REPO.parent / "shared" / "data"), help="the shared data folder")
    parser.add_argument("--out", help="keep the built data here (default: a temporary folder)")
    parser.add_argument("--repeats", type=int, default=1, help="runs per recipe; the fastest counts")
    return parser


if __name__ == "__main__":
    args = make_parser().parse_args()
    main(args.data_root, args.out, args.repeats)
