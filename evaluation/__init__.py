"""judgeforge: evaluation layer."""
