"""The results file: finished episodes, one JSON line each, written as they end.

``<out>/episodes.jsonl`` starts with a header line that says what was
evaluated (``{"schema": "sim2real.episodes/1", "task": ..., "max_episode_steps": ...}``);
every further line is one episode (see :meth:`Episode.to_record`), keyed by
policy id, variant key and seed. Resuming reads the finished episodes back and
skips them; a line cut short by an interruption is dropped.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

from sim2real.engines.base import Episode

EPISODES_FILE = "episodes.jsonl"
EPISODES_SCHEMA = "sim2real.episodes/1"

Key = tuple[str, str, int]


class EpisodeStore:
    """Finished episodes by ``(policy id, variant key, seed)``, mirrored to a JSONL file.

    Args:
        out: the output folder, or ``None`` to keep the episodes in memory only.
        header: what is being evaluated; a resumed file must have been started
            with the same header.
        resume: continue an existing file; without it an existing, non-empty
            file is refused rather than overwritten.
    """

    def __init__(self, out: Path | None, header: Mapping[str, Any], *, resume: bool) -> None:
        self.header = {"schema": EPISODES_SCHEMA, **header}
        self.episodes: dict[Key, Episode] = {}
        self._file: IO[str] | None = None
        if out is None:
            return
        path = Path(out) / EPISODES_FILE
        if path.is_file() and path.stat().st_size and not resume:
            raise ValueError(
                f"{path} already holds results; resume it (--resume) or choose another --out"
            )
        if resume and path.is_file():
            self._read(path)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(self.header) + "\n")
        self._file = path.open("a")

    def _read(self, path: Path) -> None:
        lines = path.read_text().split("\n")
        try:
            header = json.loads(lines[0])
        except json.JSONDecodeError:
            header = None
        if header != self.header:
            raise ValueError(
                f"cannot resume {path}: it was started for {header}, this run is {self.header}"
            )
        kept = [lines[0]]
        for line in lines[1:]:
            if not line.strip():
                continue
            try:
                episode = Episode.from_record(json.loads(line))
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                continue  # cut short by an interruption
            self.episodes[(episode.policy, episode.variant, episode.seed)] = episode
            kept.append(line)
        path.write_text("\n".join(kept) + "\n")

    def __contains__(self, key: Key) -> bool:
        return key in self.episodes

    def add(self, episode: Episode) -> None:
        """Record a finished episode (and append it to the file)."""
        self.episodes[(episode.policy, episode.variant, episode.seed)] = episode
        if self._file is not None:
            self._file.write(json.dumps(episode.to_record()) + "\n")
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
