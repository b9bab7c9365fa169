"""Progress of long loops (render, model inputs, eval): library code reports it, the caller shows it.

Library functions take a ``Progress`` and call ``start(what, total)``, ``advance()`` per step and
``done()`` at the end (also on errors, through ``tracking``); they never create a console. The
command line passes ``rich_progress()``, a transient bar on stderr drawn only when stderr is a
terminal (stdout carries results only); ``SILENT`` shows nothing. Messages go to module loggers
(``logging.getLogger(__name__)``), configured by whoever runs the code.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol


class Progress(Protocol):
    """One loop at a time: ``start`` it, ``advance`` it a step at a time, ``done`` when it ends."""

    def start(self, what: str, total: int) -> None: ...

    def advance(self, steps: int = 1) -> None: ...

    def done(self) -> None: ...


class _Silent:
    """Shows nothing."""

    def start(self, what: str, total: int) -> None:
        pass

    def advance(self, steps: int = 1) -> None:
        pass

    def done(self) -> None:
        pass


SILENT: Progress = _Silent()


class _RichProgress:
    """A rich bar on stderr, removed when done; nothing at all when stderr is not a terminal."""

    def __init__(self) -> None:
        self._bar: Any = None
        self._task: Any = None

    def start(self, what: str, total: int) -> None:
        from rich.console import Console
        from rich.progress import Progress as Bar

        from voxqa.views.terminal import markup_safe

        self.done()
        err = Console(stderr=True)
        self._bar = Bar(transient=True, console=err, disable=not err.is_terminal)
        self._bar.start()
        self._task = self._bar.add_task(markup_safe(what, one_line=True), total=total)  # a model's name

    def advance(self, steps: int = 1) -> None:
        if self._bar is not None:
            self._bar.advance(self._task, steps)

    def done(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = self._task = None


def rich_progress() -> Progress:
    """The command line's progress: a transient bar on stderr, only on a terminal."""
    return _RichProgress()


@contextmanager
def tracking(progress: Progress, what: str, total: int) -> Iterator[Callable[[], None]]:
    """``progress`` started for ``total`` steps; yields its one-step ``advance``; ``done`` on exit,
    whether the loop finished or raised."""
    progress.start(what, total)
    try:
        yield progress.advance
    finally:
        progress.done()
