"""The judge metrics as a local ``evaluate`` module: ``evaluate.load(MODULE_PATH)``, no hub needed."""

from pathlib import Path


__all__ = ["MODULE_PATH"]

MODULE_PATH = str(Path(__file__).with_name("judge_metrics.py"))
