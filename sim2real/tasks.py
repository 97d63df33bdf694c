"""The built-in paired tasks, read from ``envs/<task>.yaml``."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache

from sim2real.paths import data_dir
from sim2real.spec import SkewSpec, SkewSpecError, load_yaml


@dataclass(frozen=True)
class Task:
    """A robot control problem: its upstream base env and its named real presets."""

    name: str
    base_id: str
    description: str
    observation_dim: int
    action_dim: int
    presets: dict[str, SkewSpec] = field(repr=False)

    @property
    def sim_id(self) -> str:
        return f"sim2real/{self.name}-sim-v0"

    @property
    def real_id(self) -> str:
        return f"sim2real/{self.name}-real-v0"

    def preset(self, name: str) -> SkewSpec:
        if name not in self.presets:
            raise SkewSpecError(
                f"real preset {name!r} is not defined for {self.name}; "
                f"allowed: {', '.join(self.presets)}"
            )
        return self.presets[name]


@cache
def tasks() -> dict[str, Task]:
    """Every built-in task by name, in file order."""
    found: dict[str, Task] = {}
    for path in sorted(data_dir("envs").glob("*.yaml")):
        raw = load_yaml(path, what="task definition")
        presets = {}
        for preset, spec in raw["presets"].items():
            try:
                presets[preset] = SkewSpec.load(spec)
            except SkewSpecError as error:
                raise SkewSpecError(f"{path.name}: preset {preset}: {error}") from None
        found[raw["task"]] = Task(
            name=raw["task"],
            base_id=raw["base"],
            description=raw["description"],
            observation_dim=int(raw["observation_dim"]),
            action_dim=int(raw["action_dim"]),
            presets=presets,
        )
    return found


def get_task(name: str) -> Task:
    """The built-in task ``name`` (case-insensitive), or one clear error listing the tasks."""
    by_lower = {key.lower(): task for key, task in tasks().items()}
    if name.lower() not in by_lower:
        raise SkewSpecError(f"unknown task {name!r}; allowed: {', '.join(tasks())}")
    return by_lower[name.lower()]
