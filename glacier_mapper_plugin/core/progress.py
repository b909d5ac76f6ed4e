"""Progress and cancellation for long core functions, independent of QGIS.

Core functions take a `Progress`; the Processing layer passes one that forwards to
QgsProcessingFeedback, scripts and tests pass `Progress()` or a subclass.
"""
from __future__ import annotations


class Cancelled(Exception):
    """Raised inside core work when the user cancelled; outputs are left untouched."""


class Progress:
    """Reports fractions in [0, 1] and raises `Cancelled` from `check()` once cancelled."""

    def __init__(self, echo: bool = False):
        self.echo = echo
        self.fraction = 0.0
        self.cancelled = False

    def update(self, fraction: float, message: str | None = None) -> None:
        self.fraction = min(max(float(fraction), 0.0), 1.0)
        if message:
            self.info(message)
        self.check()

    def info(self, message: str) -> None:
        if self.echo:
            print(message, flush=True)

    def warning(self, message: str) -> None:
        self.info("WARNING: " + message)

    def is_cancelled(self) -> bool:
        return self.cancelled

    def check(self) -> None:
        if self.is_cancelled():
            raise Cancelled("cancelled by the user")

    def sub(self, start: float, end: float) -> "SubProgress":
        """A view mapping [0, 1] onto [start, end] of this progress."""
        return SubProgress(self, start, end)


class SubProgress(Progress):
    def __init__(self, parent: Progress, start: float, end: float):
        super().__init__()
        self.parent, self.start, self.end = parent, start, end

    def update(self, fraction, message=None):
        self.parent.update(self.start + (self.end - self.start) * min(max(fraction, 0.0), 1.0),
                           message)

    def info(self, message):
        self.parent.info(message)

    def warning(self, message):
        self.parent.warning(message)

    def is_cancelled(self):
        return self.parent.is_cancelled()
