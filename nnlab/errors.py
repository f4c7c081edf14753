"""Error types. Raised where a problem is detected; turned into messages at the CLI edge only."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class NnlabError(Exception):
    """Any problem a user can fix: the CLI prints the message and exits with ``exit_code``."""

    exit_code = 2


class ConfigError(NnlabError):
    """A config key or value is wrong. ``path`` is the key path (``model.layers[0].units``)."""

    def __init__(
        self, message: str, path: str | None = None, source: str | None = None, note: str = ""
    ):
        self.path = path
        self.source = source
        self.detail = message
        self.note = note  # e.g. "(from --set)"
        super().__init__(message)

    def __str__(self) -> str:
        path = _printable(self.path)
        path = f"{path} {self.note}" if path and self.note else path
        where = ": ".join(p for p in (_printable(self.source), path) if p)
        return f"{where}: {self.detail}" if where else self.detail

    def located(self, source: str, note: str = "") -> ConfigError:
        """The same error, naming the file it came from (and how the key was set)."""
        return ConfigError(self.detail, self.path, source, note or self.note)


class DataError(NnlabError):
    """A data set cannot be read or is not what it should be; the message names the remedy."""


class RunError(NnlabError):
    """A run folder is missing, damaged or not a run."""


MAX_NAME = 300  # characters of a key path or file name quoted in a message


def _printable(text: str | None) -> str | None:
    """A key path or file name as one short line: control characters escaped, cut to
    ``MAX_NAME`` characters (a key path may come from a file of megabytes)."""
    if text is None:
        return None
    if not text.isprintable():
        text = repr(text[: MAX_NAME + 1])[1:-1]
    return text if len(text) <= MAX_NAME else text[: MAX_NAME - 3] + "..."


def did_you_mean(given: object, allowed: Iterable[str]) -> str:
    """`` Did you mean 'x'?`` (with a leading space) when ``given`` is close to an allowed name."""
    if not isinstance(given, str):
        return ""
    close = difflib.get_close_matches(given, list(allowed), n=1, cutoff=0.6)
    if not close:
        lowered = {a.lower(): a for a in allowed}
        close = [lowered[given.lower()]] if given.lower() in lowered else []
    return f" Did you mean '{close[0]}'?" if close else ""


def allowed_list(allowed: Iterable[str]) -> str:
    return ", ".join(sorted(allowed))
