"""Where a path written in a recipe points: one lookup order for every recipe kind."""

from __future__ import annotations

from pathlib import Path


__all__ = ["PROJECT_ROOT", "resolve_path"]

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def resolve_path(path: str | Path, recipe_path: str | Path | None = None) -> Path:
    """``path`` as given if it exists, else next to the recipe file, else under the project root.

    A recipe names its data, configs and other recipes relative to wherever it is read from; the
    fallbacks let the recipes in ``recipes/`` work from any working directory. A path found
    nowhere comes back as given, for the caller's "an existing file" check to name.
    """
    candidate = Path(path).expanduser()
    if candidate.is_absolute() or candidate.exists():
        return candidate
    for base in ([Path(recipe_path).resolve().parent] if recipe_path else []) + [PROJECT_ROOT]:
        if (base / candidate).exists():
            return base / candidate
    return candidate
