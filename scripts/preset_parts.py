#!/usr/bin/env python
"""Return of one policy on parts of a real-variant preset: which skews, together, bring it down.

Each part is a '+'-joined list of the preset's sections (``dynamics``, ``actuation``,
``sensing``, ``timing``) or single fields (``dynamics.mass_scale``) taken at the preset's
values; ``no-sensing`` is the whole preset without that section. Default parts: the whole
preset, each section alone, and the preset without each section. One episode per seed
on each part (:func:`sim2real.evaluate_gap`, common seeds, no attribution); prints a
Markdown table of mean returns (docs/robustify.md, "InvertedDoublePendulum (session 11)").

    python scripts/preset_parts.py policies/InvertedDoublePendulum/robust/seed0 \\
        --task InvertedDoublePendulum --preset harsh --seeds 200-205 \\
        --parts all no-sensing dynamics+timing actuation+timing dynamics+actuation timing
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

SECTIONS = ("dynamics", "actuation", "sensing", "timing")


def preset_sections(task: str, preset: str) -> dict[str, dict[str, Any]]:
    """The preset's skews by section, each field at its value (nominal fields left out)."""
    from sim2real.tasks import get_task

    spec = get_task(task).presets[preset].to_dict()  # {"dynamics": {"mass_scale": 1.2}, ...}
    return {name: dict(spec[name]) for name in SECTIONS if spec.get(name)}


def part_skews(part: str, sections: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The skews of one part: ``all``, ``no-SECTION``, or '+'-joined sections and fields."""
    if part == "all":
        return sections
    if part.startswith("no-"):
        left = part[3:]
        if left not in sections:
            raise ValueError(f"part {part!r}: the preset has no section {left!r}")
        return {k: v for k, v in sections.items() if k != left}
    skews: dict[str, dict[str, Any]] = {}
    for piece in part.split("+"):
        section, _, field = piece.partition(".")
        if section not in sections or (field and field not in sections[section]):
            known = [*sections, *(f"{s}.{f}" for s, fs in sections.items() for f in fs)]
            raise ValueError(f"part {part!r}: {piece!r} is not in the preset; allowed: {known}")
        values = sections[section] if not field else {field: sections[section][field]}
        skews.setdefault(section, {}).update(values)
    return skews


def mean_return(policy: str, task: str, skews: dict, seeds: list[int]) -> float:
    import sim2real

    report = sim2real.evaluate_gap(policy, task, seeds=seeds, real=skews, attribution=False,
                                   n_envs=min(len(seeds), 8), progress=False)  # fmt: skip
    returns = next(iter(report.to_dict()["groups"].values()))["returns"]
    return float(next(v for k, v in returns.items() if k != "sim")["mean"]["value"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", required=True)
    parser.add_argument("--preset", default="harsh")
    parser.add_argument("--seeds", default="200-205", help="episode seeds, such as 200-205")
    parser.add_argument("--parts", nargs="+", help="default: all, each section, all but each")
    parser.add_argument("policy", type=Path)
    args = parser.parse_args(argv)
    from sim2real.cli_options import parse_seeds
    from sim2real.tasks import get_task

    try:
        task = get_task(args.task)
        if args.preset not in task.presets:
            raise ValueError(f"--preset {args.preset!r}: allowed: {', '.join(task.presets)}")
        seeds = parse_seeds(args.seeds)
        sections = preset_sections(args.task, args.preset)
        default = ["all", *sections, *(f"no-{s}" for s in sections)]
        parts = {part: part_skews(part, sections) for part in args.parts or default}
        if not (args.policy / "model.zip").is_file():
            raise ValueError(f"policy {args.policy}: no model.zip there")
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    import torch

    torch.set_num_threads(1)
    print(f"| part of `{args.preset}` ({args.task}, {args.policy}) | mean return |")
    print("|---|---|")
    for part, skews in parts.items():
        value = mean_return(str(args.policy), args.task, skews, seeds)
        print(f"| {part} | {value:,.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
