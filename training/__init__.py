"""judgeforge: training layer."""
