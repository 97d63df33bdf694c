"""Rendering an envelope map: Markdown, and plots (matplotlib, Agg). Nothing is computed here
that the map does not hold.

- one axis: the success probability of each region with its one-sided bounds, against
  ``success`` (``envelope.png``);
- two or three axes: a heatmap per pair of axes with the three statuses and the boundary
  of the inside region (``envelope_<a>_<b>.png``, the fields' names without their section
  unless two share a name); with three axes, a pair's heatmap shows
  a point as inside only if it is inside at every value of the third axis, outside only if
  outside at every value.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from sim2real.remedies.envelope_stats import Status

if TYPE_CHECKING:
    from sim2real.remedies.envelope import EnvelopeMap

COLOURS = {Status.INSIDE: "#4daf4a", Status.UNCERTAIN: "#ffd92f", Status.OUTSIDE: "#e41a1c"}
_CODE = {Status.OUTSIDE: 0, Status.UNCERTAIN: 1, Status.INSIDE: 2}


def to_markdown(env_map: EnvelopeMap) -> str:
    s, summary, sim = env_map.settings, env_map.summary, env_map.sim
    lines = [
        f"# Operating envelope: {env_map.policy['label']} on {env_map.task}",
        "",
        f"An episode succeeds when its return is at least {sim['success_return']:.1f} "
        f"({s['threshold']:g} of {_reference(env_map)}). "
        "A region is **inside** when its success probability is "
        f"at least {s['success']:g} with {s['confidence']:.0%} confidence (one-sided "
        "Clopper-Pearson lower bound), **outside** when the upper bound is below it, "
        "**uncertain** otherwise.",
        "",
        f"Fixed skews (base): `{env_map.base or 'nominal'}`",
        "",
        "| axis | unit | range | spacing | values run |",
        "|---|---|---|---|---|",
    ]
    for axis in env_map.axes:
        values = ", ".join(f"{v:.4g}" for v in axis.values)
        if axis.substeps is not None:
            values += f" (whole substeps of {axis.substep_s:g} s: {list(axis.substeps)})"
        lines.append(
            f"| {axis.field} | {axis.unit} | {axis.low:g} to {axis.high:g} | {axis.scale} | "
            f"{values} |"
        )
    lines += [
        "",
        f"**Area inside: {summary['area_inside']:.1%}** of the mapped box "
        f"(outside {summary['area_outside']:.1%}, uncertain {summary['area_uncertain']:.1%}), "
        f"from {summary['map_episodes']} episodes (+{summary['sim_episodes']} sim) in "
        f"{summary['rounds']} rounds over {summary['cells']} cells; stopped: "
        f"{summary['stopped']}.",
        "",
        "| region | episodes | successes | lower | upper | status |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for result in env_map.cells:
        bounds = []
        for axis, lo, hi in zip(env_map.axes, result.lo, result.hi, strict=True):
            edges = axis.edges()
            bounds.append(f"{axis.field.split('.')[1]} {edges[lo]:.4g}-{edges[hi]:.4g}")
        lines.append(
            f"| {'; '.join(bounds)} | {result.episodes} | {result.successes} | "
            f"{result.lower:.3f} | {result.upper:.3f} | {result.status.value} |"
        )
    return "\n".join(lines) + "\n"


def _reference(env_map: EnvelopeMap) -> str:
    sim, given = env_map.sim, env_map.settings.get("reference_return")
    own = f"the mean sim return {sim['mean_return']:.1f}, measured on {sim['episodes']} seeds"
    if given is None:
        return own
    return f"the reference return {given:.1f}; this policy's own is {own}"


def _bar_name(env_map: EnvelopeMap) -> str:
    given = env_map.settings.get("reference_return")
    return "sim" if given is None else f"{given:.0f}"


def plot(env_map: EnvelopeMap, out: Path) -> list[Path]:
    """Write the plots of ``env_map`` into ``out``; the paths written."""
    import matplotlib

    matplotlib.use("Agg")
    if len(env_map.axes) == 1:
        path = out / "envelope.png"
        _curve(env_map, path)
        return [path]
    short = [axis.field.split(".")[1] for axis in env_map.axes]
    if len(set(short)) < len(short):  # e.g. sensing.noise_std and actuation.noise_std
        short = [axis.field.replace(".", "_") for axis in env_map.axes]
    paths = []
    for a, b in itertools.combinations(range(len(env_map.axes)), 2):
        path = out / f"envelope_{short[a]}_{short[b]}.png"
        _heatmap(env_map, a, b, path)
        paths.append(path)
    return paths


def save_report(env_map: EnvelopeMap, out: Path) -> list[Path]:
    """``envelope.json``, ``report.md`` and the plots, into ``out``."""
    from sim2real.remedies.envelope import ENVELOPE_FILE

    out.mkdir(parents=True, exist_ok=True)
    (out / ENVELOPE_FILE).write_text(env_map.to_json() + "\n")
    (out / "report.md").write_text(to_markdown(env_map))
    return [out / ENVELOPE_FILE, out / "report.md", *plot(env_map, out)]


def pair_codes(env_map: EnvelopeMap, a: int, b: int) -> np.ndarray:
    """``(size_a, size_b)`` status codes (0 outside, 1 uncertain, 2 inside) of the pair of
    axes ``a, b``: with a third axis, inside only where inside along all of it, outside only
    where outside along all of it."""
    grid = np.vectorize(lambda s: _CODE[s])(env_map.status_grid())
    rest = tuple(i for i in range(grid.ndim) if i not in (a, b))
    if rest:
        low, high = grid.min(axis=rest), grid.max(axis=rest)
        grid = np.where(low == high, low, 1)
    return grid if a < b else grid.T


def _heatmap(env_map: EnvelopeMap, a: int, b: int, path: Path) -> None:
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    axis_a, axis_b = env_map.axes[a], env_map.axes[b]
    codes = pair_codes(env_map, a, b)
    x, y = axis_a.edges(), axis_b.edges()
    colours = ListedColormap([COLOURS[s] for s in _CODE])
    fig, ax = plt.subplots(figsize=(6.4, 5.2))
    ax.pcolormesh(x, y, codes.T, cmap=colours, vmin=-0.5, vmax=2.5, shading="flat")
    if len(env_map.axes) == 2:
        for result in env_map.cells:  # the regions the map decided on
            x0, x1 = x[result.lo[a]], x[result.hi[a]]
            y0, y1 = y[result.lo[b]], y[result.hi[b]]
            ax.plot([x0, x1, x1, x0, x0], [y0, y0, y1, y1, y0], color="white", lw=0.4)
    inside = codes == 2  # the boundary of the inside region
    for i, j in itertools.product(range(codes.shape[0]), range(codes.shape[1])):
        if i + 1 < codes.shape[0] and inside[i, j] != inside[i + 1, j]:
            ax.plot([x[i + 1]] * 2, [y[j], y[j + 1]], color="black", lw=2)
        if j + 1 < codes.shape[1] and inside[i, j] != inside[i, j + 1]:
            ax.plot([x[i], x[i + 1]], [y[j + 1]] * 2, color="black", lw=2)
    for setter, axis in ((ax.set_xscale, axis_a), (ax.set_yscale, axis_b)):
        if axis.scale == "log":
            setter("log")
    ax.set_xlabel(f"{axis_a.field} ({axis_a.unit})")
    ax.set_ylabel(f"{axis_b.field} ({axis_b.unit})")
    s = env_map.settings
    note = " (worst over the third axis)" if len(env_map.axes) == 3 else ""
    ax.set_title(
        f"{env_map.policy['label']} on {env_map.task}: inside {env_map.area_inside:.0%}{note}\n"
        f"return >= {s['threshold']:g} x {_bar_name(env_map)} with p >= {s['success']:g} at "
        f"{s['confidence']:.0%}",
        fontsize=9,
    )
    ax.legend(
        handles=[Patch(color=COLOURS[st], label=st.value) for st in Status],
        loc="upper right",
        fontsize=8,
        framealpha=0.8,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _curve(env_map: EnvelopeMap, path: Path) -> None:
    import matplotlib.pyplot as plt

    axis = env_map.axes[0]
    edges = axis.edges()
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for result in env_map.cells:
        x0, x1 = edges[result.lo[0]], edges[result.hi[0]]
        ax.axvspan(x0, x1, color=COLOURS[result.status], alpha=0.25, lw=0)
        if result.episodes:
            rate = result.successes / result.episodes
            ax.fill_between([x0, x1], result.lower, result.upper, color="grey", alpha=0.4, lw=0)
            ax.plot([x0, x1], [rate, rate], color="black", lw=1.5)
    ax.axhline(env_map.settings["success"], color="black", ls="--", lw=1, label="success")
    if axis.scale == "log":
        ax.set_xscale("log")
    ax.set_xlim(axis.low, axis.high)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel(f"{axis.field} ({axis.unit})")
    ax.set_ylabel("success probability")
    ax.set_title(
        f"{env_map.policy['label']} on {env_map.task}: inside {env_map.area_inside:.0%} "
        f"(band: one-sided bounds at {env_map.settings['confidence']:.0%})",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
