"""One command-line vocabulary, shared by every ``sim2real`` subcommand.

Each ``add_*`` function adds one option with the same name, meaning and help in
every command that takes it:

- ``--seeds``: episode seeds as a range or a list (``100-129``, ``0,3,5``, ``0-9,20``),
  never a count;
- ``--out``: an output folder with a default, refused up front when it is a file
  or cannot be written, created only when the run writes into it;
- ``--resume`` (a flag: continue what ``--out`` already holds), ``--overwrite``,
  ``--engine local|batch|ray``, ``--no-progress``.

:class:`Progress` shows long work: a tqdm bar on a terminal, and a plain line at
least every 30 s when stdout is a log. This module imports nothing heavy, so the
command line rejects bad input before torch, mujoco or gymnasium load.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TextIO

ENGINES = ("local", "batch", "ray")
EPISODES_FILE = "episodes.jsonl"  # the results file of sim2real.evaluation.store
PROGRESS_INTERVAL_S = 30.0
_SEEDS_HELP = "episode seeds: a range or a list, such as 100-129, 0,3,5 or 0-9,20"


def parse_seeds(text: str, *, option: str = "--seeds") -> list[int]:
    """``"100-129"``, ``"0,3,5"`` or ``"0-9,20"`` -> the seeds, in order.

    Raises:
        ValueError: naming ``option`` and the text, on an empty, negative, reversed,
            repeated or non-integer seed, or a bare number (seeds are never a count).

    >>> parse_seeds("0-3,7")
    [0, 1, 2, 3, 7]
    """
    if not isinstance(text, str):
        raise ValueError(f"{option} must be a string such as 100-129, got {text!r}")
    if not text.strip():
        raise ValueError(f"{option} is empty; give a range or a list, such as 100-129 or 0,3,5")
    if re.fullmatch(r"\s*\d+\s*", text):
        seed = int(text)
        raise ValueError(
            f"{option} {text.strip()!r} is a bare number; seeds are a range or a list, not a "
            f"count: write {seed}-{seed + 7} for 8 seeds from {seed}, or {seed}-{seed} for "
            f"seed {seed} alone"
        )
    seeds: list[int] = []
    for part in text.split(","):
        match = re.fullmatch(r"\s*(-?\d+)\s*(?:-\s*(-?\d+)\s*)?", part)
        if match is None:
            raise ValueError(
                f"{option} {text!r}: {part.strip()!r} is not an integer or a range; "
                "expected e.g. 100-129, 0,3,5 or 0-9,20"
            )
        first, last = int(match.group(1)), int(match.group(2) or match.group(1))
        if first < 0 or last < 0:
            raise ValueError(f"{option} {text!r}: seeds must be >= 0, got {part.strip()}")
        if last < first:
            raise ValueError(
                f"{option} {text!r}: range {part.strip()} runs backwards (write {last}-{first})"
            )
        seeds.extend(range(first, last + 1))
    if len(set(seeds)) < len(seeds):
        repeated = next(s for i, s in enumerate(seeds) if s in seeds[:i])
        raise ValueError(f"{option} {text!r}: seed {repeated} appears more than once")
    return seeds


def _seeds_type(text: str) -> list[int]:
    try:
        return parse_seeds(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error).removeprefix("--seeds ")) from None


def check_out(path: str | os.PathLike[str], *, option: str = "--out") -> Path:
    """An output folder that can be written: an existing folder, or one that can be made.

    Nothing is created here (see :func:`output_folder`).

    Raises:
        ValueError: when ``path`` is a file, sits below a file, or is not writable.
    """
    out = Path(path)
    if str(path).strip() == "":
        raise ValueError(f"{option} is empty; give a folder")
    if out.exists() and not out.is_dir():
        raise ValueError(f"{option} {str(out)!r} is a file; give a folder")
    parent = out.absolute()
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise ValueError(f"{option} {str(out)!r}: {str(parent)!r} is a file, not a folder")
    try:  # the one honest test of writability (os.access lies to root)
        with tempfile.TemporaryFile(dir=parent):
            pass
    except OSError as error:
        where = "" if parent == out.absolute() else f" (in {str(parent)!r})"
        raise ValueError(
            f"{option} {str(out)!r} is not writable{where}: {error.strerror}"
        ) from None
    return out


def _out_type(text: str) -> Path:
    try:
        return check_out(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error).removeprefix("--out ")) from None


@contextlib.contextmanager
def output_folder(path: str | os.PathLike[str] | None) -> Iterator[Path | None]:
    """Run a command that writes into ``path``; if it fails, remove the folders it created
    and left empty, so a failed run leaves no empty output folder behind."""
    if path is None:
        yield None
        return
    out = Path(path)
    missing: list[Path] = []
    probe = out
    while not probe.exists() and probe != probe.parent:
        missing.append(probe)
        probe = probe.parent
    ok = False
    try:
        yield out
        ok = True
    finally:
        if not ok:
            _remove_if_empty(missing)


def _remove_if_empty(created: list[Path]) -> None:
    """Remove ``created`` (deepest first) where it holds no result: nothing but empty folders
    and results files without an episode."""
    for folder in created:
        if folder.is_dir() and not any(_is_result(p) for p in folder.rglob("*")):
            shutil.rmtree(folder, ignore_errors=True)


def _is_result(path: Path) -> bool:
    if not path.is_file():
        return False
    return path.name != EPISODES_FILE or count_episodes(path) > 0


def count_episodes(path: Path) -> int:
    """Finished episodes in a results file (``episodes.jsonl``: a header line, then one JSON
    line per episode; a line cut short by an interruption does not count); 0 if absent."""
    if not path.is_file():
        return 0
    count = 0
    for line in path.read_text().splitlines()[1:]:
        with contextlib.suppress(json.JSONDecodeError):
            json.loads(line)
            count += 1
    return count


def positive_int(text: str) -> int:
    """An argparse type: an integer > 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def existing_file(text: str) -> Path:
    """An argparse type: a path to an existing file."""
    path = Path(text)
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "does not exist"
        raise argparse.ArgumentTypeError(f"{text!r} {what}; give a file")
    return path


def existing_folder(text: str) -> Path:
    """An argparse type: a path to an existing folder."""
    path = Path(text)
    if not path.is_dir():
        what = "is a file" if path.is_file() else "does not exist"
        raise argparse.ArgumentTypeError(f"{text!r} {what}; give a folder")
    return path


def probability(text: str) -> float:
    """An argparse type: a number strictly between 0 and 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1), got {text!r}") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be strictly between 0 and 1, got {text}")
    return value


def check_resume(out: Path, existing: list[str], *, resume: bool, overwrite: bool = False) -> None:
    """Refuse to run into ``out`` when it already holds results (``existing``, named in the
    message) unless ``--resume`` or ``--overwrite`` says what to do with them."""
    if resume and overwrite:
        raise ValueError("--resume and --overwrite exclude each other: continue or replace")
    if existing and not (resume or overwrite):
        raise ValueError(
            f"--out {str(out)!r} already holds results ({', '.join(existing)}); add --resume "
            "to continue them or --overwrite to discard them"
        )


def say_reused(paths: list[Path], *, stream: TextIO | None = None) -> int:
    """Print how many finished episodes ``--resume`` reuses from these results files; return
    that count."""
    count = sum(count_episodes(path) for path in paths)
    where = str(paths[0]) if len(paths) == 1 else f"{len(paths)} results files"
    print(f"--resume: reusing {count} finished episodes from {where}", file=stream or sys.stdout)
    return count


def claim_out(
    out: Path,
    held: list[str],
    *,
    resume: bool,
    overwrite: bool,
    discard: Iterable[Path] = (),
    reused: Iterable[Path] = (),
) -> None:
    """The resume/overwrite preamble of a command that writes into ``out``.

    Refuses to run when ``out`` holds results (``held``, named in the message) and
    neither ``resume`` nor ``overwrite`` says what to do with them (:func:`check_resume`);
    with ``overwrite``, removes ``discard`` (files, and folders with what they hold);
    with ``resume``, says how many finished episodes the ``reused`` results files hold
    (:func:`say_reused`; nothing is said when there are none to name).
    """
    check_resume(out, held, resume=resume, overwrite=overwrite)
    if overwrite:
        for path in discard:
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
    reused = list(reused)
    if resume and reused:
        say_reused(reused)


# ---- the options -------------------------------------------------------------------------


def add_seeds(parser: argparse.ArgumentParser, default: str | None, help: str = "") -> None:
    """``--seeds``: a range or a list of episode seeds, parsed to ``list[int]``."""
    if default is not None:
        parse_seeds(default)  # a bad default is a bug in the caller, caught at once
    parser.add_argument(
        "--seeds",
        type=_seeds_type,
        default=default,
        metavar="SEEDS",
        help=help or _SEEDS_HELP,
    )


def add_out(parser: argparse.ArgumentParser, default: str, help: str = "output folder") -> None:
    """``--out``: an output folder, checked up front (:func:`check_out`), parsed to ``Path``."""
    parser.add_argument("--out", type=_out_type, default=Path(default), metavar="DIR", help=help)


def add_resume(
    parser: argparse.ArgumentParser,
    help: str = "continue the run already in --out, reusing what it finished",
) -> None:
    """``--resume``: a flag."""
    parser.add_argument("--resume", action="store_true", help=help)


def add_overwrite(
    parser: argparse.ArgumentParser,
    help: str = "replace the run already in --out",
) -> None:
    """``--overwrite``: a flag."""
    parser.add_argument("--overwrite", action="store_true", help=help)


def add_engine(parser: argparse.ArgumentParser, default: str = "local") -> None:
    """``--engine local|batch|ray``."""
    parser.add_argument(
        "--engine",
        choices=ENGINES,
        default=default,
        help="where episodes run: local (one process), batch (mujoco.batch), ray (a cluster)",
    )


def add_no_progress(parser: argparse.ArgumentParser) -> None:
    """``--no-progress``: no bar and no progress lines."""
    parser.add_argument(
        "--no-progress", action="store_true", help="no progress bar or progress lines"
    )


def progress_enabled(args: argparse.Namespace) -> bool | None:
    """``False`` under ``--no-progress``, else ``None`` (a bar on a terminal, lines in a log)."""
    return False if getattr(args, "no_progress", False) else None


# ---- progress ----------------------------------------------------------------------------


class Progress:
    """Progress of ``total`` units of work: a tqdm bar on a terminal, lines in a log.

    When ``stream`` is not a terminal, a line ``desc: done/total unit (pct), elapsed, left``
    is printed at least every ``interval_s`` seconds (a background timer, so a slow unit
    still shows the run is alive) and once at the end.

    Args:
        total: units of work (episodes, steps); ``None`` when unknown.
        desc: what is running, e.g. ``"evaluate Hopper"``.
        unit: the unit's name, plural.
        enabled: ``False`` shows nothing; ``None`` (default) or ``True`` shows progress.
        interval_s: seconds between log lines, at most.
        stream: where progress goes (default ``sys.stdout``).
        initial: units already done (reused by ``--resume``).

    >>> import io
    >>> log = io.StringIO()
    >>> with Progress(4, "demo", unit="episodes", stream=log) as progress:
    ...     progress.update(4)
    >>> "demo: 4/4 episodes (100%)" in log.getvalue()
    True
    """

    def __init__(
        self,
        total: int | None,
        desc: str,
        *,
        unit: str = "episodes",
        enabled: bool | None = None,
        interval_s: float = PROGRESS_INTERVAL_S,
        stream: TextIO | None = None,
        initial: int = 0,
    ) -> None:
        self.total, self.desc, self.unit = total, desc, unit
        self.done = initial
        self._initial = initial
        self.stream = stream if stream is not None else sys.stdout
        self._interval = interval_s
        self._started = time.monotonic()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._bar: Any = None
        self._thread: threading.Thread | None = None
        self._enabled = enabled is not False
        if not self._enabled:
            return
        if _isatty(self.stream):
            from tqdm.auto import tqdm

            self._bar = tqdm(
                total=total, desc=desc, unit=unit.rstrip("s"), initial=initial, file=self.stream
            )
        else:
            self._thread = threading.Thread(target=self._heartbeat, daemon=True)
            self._thread.start()

    def update(self, n: int = 1) -> None:
        """``n`` more units done."""
        with self._lock:
            self.done += n
        if self._bar is not None:
            self._bar.update(n)

    def line(self) -> str:
        """The current state in one line."""
        elapsed = time.monotonic() - self._started
        if self.total:
            share = self.done / self.total
            text = f"{self.desc}: {self.done}/{self.total} {self.unit} ({share:.0%}), "
        else:
            text = f"{self.desc}: {self.done} {self.unit}, "
        text += f"{_duration(elapsed)} elapsed"
        fresh = self.done - self._initial
        if self.total and fresh > 0 and self.done < self.total:
            left = elapsed / fresh * (self.total - self.done)
            text += f", about {_duration(left)} left"
        return text

    def _heartbeat(self) -> None:
        while not self._stop.wait(self._interval):
            self._print()

    def _print(self) -> None:
        with self._lock:
            print(self.line(), file=self.stream, flush=True)

    def close(self) -> None:
        """Stop the timer; print the final line (log) or close the bar (terminal)."""
        if not self._enabled or self._stop.is_set():
            return
        self._stop.set()
        if self._bar is not None:
            self._bar.close()
        else:
            if self._thread is not None:
                self._thread.join()
            self._print()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def progress_bar(
    *,
    total: int | None,
    desc: str,
    initial: int = 0,
    unit: str = "episode",
    disable: bool | None = None,
) -> Progress:
    """A :class:`Progress` called like ``tqdm`` (``disable=None``: a bar on a terminal, lines
    in a log; ``True``: nothing); ``initial`` units were done before (``--resume``)."""
    units = unit if unit.endswith("s") else f"{unit}s"
    return Progress(total, desc, unit=units, enabled=not disable, initial=initial)


def sb3_progress_callback(total_timesteps: int, desc: str, *, enabled: bool | None = None) -> Any:
    """A Stable-Baselines3 callback showing training as :class:`Progress` (environment steps):
    a bar on a terminal, a line at least every 30 s in a log. Use it with
    ``model.learn(..., callback=[..., this], progress_bar=False)``."""
    from stable_baselines3.common.callbacks import BaseCallback

    class ProgressCallback(BaseCallback):
        def _on_training_start(self) -> None:
            self.progress = Progress(
                total_timesteps,
                desc,
                unit="steps",
                enabled=enabled,
                initial=int(self.model.num_timesteps),
            )

        def _on_step(self) -> bool:
            self.progress.update(int(self.training_env.num_envs))
            return True

        def _on_training_end(self) -> None:
            self.progress.close()

    return ProgressCallback()


def _isatty(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
