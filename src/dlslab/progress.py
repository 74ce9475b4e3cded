"""Progress on the terminal, drawn with rich on stderr (stdout keeps the `run:` lines).

One display per study (`StudyDisplay`, opened by the runner): a study bar with the time
spent and an ETA over the whole study, and under it a bar for the step in progress (a
training over all its epochs, a corpus or voice build: `task`, `track`). The ETA comes from
the last finished run of the same study and preset; a first run shows the time spent only.
Outside a study display, `task` draws a bar of its own. Nothing is drawn when stderr is not
a terminal or when the run is quiet.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, ClassVar, TypeVar

T = TypeVar("T")


def _progress() -> Any:
    from rich.console import Console
    from rich.progress import (BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)

    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), TaskProgressColumn(),
                    TextColumn("{task.fields[stats]}"), TimeElapsedColumn(), TextColumn("ETA"),
                    TimeRemainingColumn(), console=Console(stderr=True), transient=True)


class StudyDisplay:
    """The display of one study: its bar (seconds spent out of `expected_s`) and the steps'."""

    active: ClassVar[StudyDisplay | None] = None

    def __init__(self, title: str, expected_s: float | None = None, enabled: bool = True):
        self.title, self.expected_s = title, expected_s
        self.enabled = enabled and sys.stderr.isatty()
        self.bar: Any = None
        self.t0 = time.monotonic()

    def __enter__(self) -> StudyDisplay:
        if StudyDisplay.active is None:  # a quiet display is active too: it keeps steps quiet
            StudyDisplay.active = self
            if self.enabled:
                self.bar = _progress()
                self.bar.start()
                stats = "" if self.expected_s else "first run of this preset: no ETA yet"
                self.study = self.bar.add_task(self.title, total=self.expected_s, stats=stats)
        return self

    def tick(self) -> None:
        """Move the study bar to the time spent (kept short of the end until the study ends)."""
        if self.bar is not None:
            spent = time.monotonic() - self.t0
            self.bar.update(self.study, completed=min(spent, 0.99 * self.expected_s) if self.expected_s else spent)

    def __exit__(self, *exc: Any) -> None:
        if self.bar is not None:
            self.bar.stop()
        if StudyDisplay.active is self:
            StudyDisplay.active = None


@contextlib.contextmanager
def task(description: str, total: int, enabled: bool = True) -> Iterator[Callable[..., None]]:
    """A bar for one step of `total` units; yields `update(done, stats="")`. Inside a study
    display it is a line under the study bar; otherwise a bar of its own on a terminal."""
    display = StudyDisplay.active
    own = None
    if display is None and enabled and sys.stderr.isatty():
        own = _progress()
        own.start()
    bar = display.bar if display is not None else own
    if bar is None or not enabled:
        yield lambda done, stats="": None
        return
    tid = bar.add_task(description, total=total, stats="")

    def update(done: int, stats: str = "") -> None:
        bar.update(tid, completed=done, stats=stats)
        if display is not None:
            display.tick()

    try:
        yield update
    finally:
        bar.remove_task(tid)
        if own is not None:
            own.stop()


def track(items: Iterable[T], description: str, total: int) -> Iterator[T]:
    """`items`, with a bar advanced by one per item (e.g. over a thread pool's results)."""
    with task(description, total) as update:
        for k, item in enumerate(items, 1):
            yield item
            update(k)
