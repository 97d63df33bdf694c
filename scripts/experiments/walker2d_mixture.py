#!/usr/bin/env python
"""Experiment: train on a joint mixture of two randomization specs, split across the envs.

The randomization schema draws each field on its own, so a robot that is slippery, heavy,
stiff and weak at once (Walker2d's ``harsh`` corner) is almost never drawn, and a spec
shifted toward that corner loses the nominal robot (docs/robustify.md, "Walker2d"). This
script tests the mixture without building it into the schema: of the ``n_envs`` training
envs, the first ``--corner-envs`` draw from the corner spec and the rest from the base spec,
so that a share ``corner_envs / n_envs`` of the experience is the corner, drawn jointly.
Everything else is :func:`sim2real.training.train` unchanged; the metadata records the split
(``mixture``) beside the base spec it names as ``randomization``.

    python scripts/experiments/walker2d_mixture.py --seed 0 --corner-envs 2 \\
        --init-from policies/Walker2d/robust/seed0 --timesteps 1500000 \\
        --out runs/exp/walker2d_mixture/seed0
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="Walker2d")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--base", type=Path, default=ROOT / "configs/robustify/walker2d.yaml")
    parser.add_argument(
        "--corner", type=Path, default=ROOT / "configs/robustify/walker2d_corner.yaml"
    )
    parser.add_argument("--corner-envs", type=int, default=2, help="of the config's n_envs")
    parser.add_argument("--config", type=Path, default=ROOT / "configs/train/ppo_compensated.yaml")
    parser.add_argument("--init-from", type=Path, required=True)
    parser.add_argument("--timesteps", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    n_envs = int(yaml.safe_load(args.config.read_text()).get("n_envs", 1))
    if not 0 < args.corner_envs < n_envs:
        print(f"error: --corner-envs {args.corner_envs}: allowed 1..{n_envs - 1} "
              f"(the config has {n_envs} envs)", file=sys.stderr)  # fmt: skip
        return 2
    import sim2real.training as training

    base = yaml.safe_load(args.base.read_text())
    corner = yaml.safe_load(args.corner.read_text())
    make_env = training._make_env

    def mixed_env(task, randomization, **kwargs):
        index = kwargs.get("adr_seed", 0) % 1000  # _make_vec_env: seed * 1000 + env index
        spec = corner if index < args.corner_envs else randomization
        return make_env(task, spec, **kwargs)

    training._make_env = mixed_env
    out = training.train(
        args.task, seed=args.seed, timesteps=args.timesteps, out=args.out, randomization=base,
        config=args.config, init_from=args.init_from, progress=False,
    )  # fmt: skip
    meta_file = Path(out) / "metadata.json"
    meta = json.loads(meta_file.read_text())
    meta["randomization_source"] = str(args.base)
    meta["mixture"] = {
        "base": str(args.base),
        "corner": str(args.corner),
        "corner_envs": args.corner_envs,
        "n_envs": n_envs,
        "script": "scripts/experiments/walker2d_mixture.py",
    }
    meta_file.write_text(json.dumps(meta, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
