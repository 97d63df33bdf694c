"""The README tells the truth: its figures, code blocks, commands and the docstring examples.

- Figures (``<!-- figure:NAME -->`` ... ``<!-- /figure:NAME -->``) are written by
  ``scripts/readme_figures.py``; the markers must be well formed and the quick figures
  must match a fresh run of their commands.
- A ``python`` block preceded by ``<!-- runnable -->`` runs, in order, in one namespace.
- Every ``sim2real ...`` command in a ``bash`` block parses with today's options.
- Every ``>>>`` example in a docstring of the package runs (``doctest``).
"""

from __future__ import annotations

import doctest
import importlib
import importlib.util
import os
import pkgutil
import re
import shlex
import sys
from pathlib import Path

import pytest

import sim2real
from sim2real.cli import build_parser

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
RUNNABLE = "<!-- runnable -->"


def _figures():
    spec = importlib.util.spec_from_file_location(
        "readme_figures", REPO / "scripts/readme_figures.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules["readme_figures"] = module
    spec.loader.exec_module(module)
    return module


figures = _figures()


def _fenced_blocks(text: str) -> list[tuple[str, str, bool]]:
    """``(info, body, runnable)`` for every fenced block of ``text``."""
    found = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].startswith("```"):
            end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
            before = lines[i - 1].strip() if i else ""
            info = lines[i][3:].strip().split(" ")[0]
            found.append((info, "\n".join(lines[i + 1 : end]), before == RUNNABLE))
            i = end + 1
        else:
            i += 1
    return found


# ---- figures -------------------------------------------------------------------------------
def test_figure_markers_are_well_formed_and_registered() -> None:
    figures.blocks(README.read_text())  # raises, naming the line, on a broken marker


def test_the_figure_script_finds_broken_markers() -> None:
    with pytest.raises(figures.ReadmeError, match="not closed"):
        figures.blocks("<!-- figure:demo -->\ntext\n")
    with pytest.raises(figures.ReadmeError, match="not registered"):
        figures.blocks("<!-- figure:nope -->\n<!-- /figure:nope -->\n")
    text = "a\n<!-- figure:list -->\nold\n<!-- /figure:list -->\nb\n"
    new = figures.replace(text, {"list": "new\n"})
    assert new == "a\n<!-- figure:list -->\nnew\n<!-- /figure:list -->\nb\n"


def test_a_figure_masks_only_its_volatile_parts() -> None:
    demo = figures.REGISTRY["demo"]
    assert demo.mask("0 physics divergences in the gap's episodes. 56 s.") == demo.mask(
        "0 physics divergences in the gap's episodes. 61 s."
    )
    assert demo.mask("fitted in 58 s; the truth") == demo.mask("fitted in 12 s; the truth")
    assert demo.mask("sim return 1351") != demo.mask("sim return 1407")


def test_every_registered_figure_has_markers() -> None:
    present = figures.blocks(README.read_text())
    if not present:
        pytest.skip("README.md has no figure markers yet")
    missing = [f.name for f in figures.FIGURES if f.name not in present]
    assert not missing, f"registered in scripts/readme_figures.py, no markers in README: {missing}"


def test_the_quick_figures_match_their_commands() -> None:
    text = README.read_text()
    present = figures.blocks(text)
    quick = [f for f in figures.FIGURES if f.fast and f.name in present]
    assert figures.stale(text, quick) == []


@pytest.mark.parametrize("figure", figures.FIGURES, ids=lambda f: f.name)
def test_every_figure_command_parses(figure, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    for command in re.findall(r"sim2real [^;&|>]+", figure.command):
        if "$" in command:
            continue  # a loop variable: its values are checked as they run
        try:
            build_parser().parse_args(shlex.split(command)[1:])
        except SystemExit as exit_:
            pytest.fail(f"figure {figure.name!r}: `{command}` does not parse (exit {exit_.code})")
    for script in re.findall(r"python (scripts/\S+\.py)", figure.command):
        assert (REPO / script).is_file(), f"figure {figure.name!r}: no {script}"


# ---- code blocks and commands ----------------------------------------------------------------
def test_runnable_python_blocks_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    namespace: dict = {"__name__": "__readme__"}
    blocks = [body for info, body, runnable in _fenced_blocks(README.read_text()) if runnable]
    for body in blocks:
        exec(compile(body, "README.md", "exec"), namespace)


def _commands(text: str) -> list[str]:
    commands = []
    for info, body, _ in _fenced_blocks(text):
        if info not in ("bash", "sh", "console"):
            continue
        joined = re.sub(r"\\\n\s*", " ", body)
        for line in joined.splitlines():
            line = line.split("#", 1)[0].strip().removeprefix("$ ")
            if line.startswith("sim2real "):
                commands.append(line)
    return commands


def _earlier_outs(command: str) -> list[str]:
    """The ``--out`` folders of the README commands before ``command``: a later command may
    start from one (``--init-from``), as a reader running them in order would."""
    commands = _commands(README.read_text())
    outs = []
    for earlier in commands[: commands.index(command)]:
        words = shlex.split(earlier)
        outs += [words[i + 1] for i, word in enumerate(words[:-1]) if word == "--out"]
    return outs


@pytest.mark.parametrize("command", _commands(README.read_text()) or ["sim2real list"])
def test_every_readme_command_parses(
    command: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    outs = _earlier_outs(command)
    written = {Path(out).parts[0] for out in outs}  # kept out of the repository
    for entry in REPO.iterdir():  # the repository, seen from a folder the test may write in
        if entry.name not in written:
            (tmp_path / entry.name).symlink_to(entry)
    for out in outs:
        (tmp_path / out).mkdir(parents=True, exist_ok=True)
    monkeypatch.chdir(tmp_path)
    try:
        build_parser().parse_args(shlex.split(command)[1:])
    except SystemExit as exit_:
        pytest.fail(f"README command `{command}` does not parse (exit {exit_.code})")


# ---- docstring examples ------------------------------------------------------------------
def _modules() -> list[str]:
    names = ["sim2real"]
    for info in pkgutil.walk_packages(sim2real.__path__, "sim2real."):
        if info.name.rsplit(".", 1)[-1] != "__main__":
            names.append(info.name)
    return sorted(names)


@pytest.mark.parametrize("name", _modules())
def test_docstring_examples_run(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    monkeypatch.setenv("MUJOCO_GL", os.environ.get("MUJOCO_GL", "egl"))
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    tests = [t for t in finder.find(module, name) if t.examples]
    for test in tests:
        runner.run(test, out=lambda text: sys.stderr.write(text))
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples in {name} fail"
