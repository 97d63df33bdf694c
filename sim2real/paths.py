"""Where the shipped data lives: task definitions, configs and policies.

In a source checkout the data sits beside the package (``envs/``, ``configs/``,
``policies/``); an installed wheel carries the same folders as
``sim2real/_data/<name>``.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent
_DATA_FOLDERS = ("envs", "configs", "policies")


def data_dir(name: str) -> Path:
    """Return the folder holding shipped data ``name`` (one of envs, configs, policies)."""
    if name not in _DATA_FOLDERS:
        raise ValueError(f"data folder must be one of {', '.join(_DATA_FOLDERS)}, got {name!r}")
    installed = _PACKAGE_DIR / "_data" / name
    if installed.is_dir():
        return installed
    return _PACKAGE_DIR.parent / name
