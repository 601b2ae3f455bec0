"""judgeforge: recipes layer."""
