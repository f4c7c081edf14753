"""Error types. Raised where a problem is detected; turned into messages at the CLI edge only."""

from __future__ import annotations

import difflib
import errno
import os
from collections.abc import Iterable
from typing import ClassVar


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


class StorageError(NnlabError, OSError):
    """A file cannot be written (or read) for a reason of the machine, not of its content: a
    full disk, a read-only folder, a missing permission, a symbolic link where nnlab writes a
    file of its own. The message names the file and the remedy. It is an ``OSError`` too
    (``errno``, ``filename``), so that code which falls back on an OSError (a cache written
    where it can be) still does."""

    REMEDIES: ClassVar[dict[int, str]] = {
        errno.ENOSPC: "the disk is full: free some space, or write to another folder",
        errno.EDQUOT: "the disk quota is used up: free some space, or write to another folder",
        errno.EROFS: "the file system is read-only: write to another folder",
        errno.EACCES: "permission denied: make the folder writable, or write to another one",
        errno.EPERM: "not permitted: make the folder writable, or write to another one",
        errno.ELOOP: "it is a symbolic link, which nnlab does not follow to write a file of "
        "its own: remove the link",
    }

    def __init__(
        self,
        error: OSError,
        path: str | os.PathLike | None,
        doing: str | None = "write",
        hint: str = "",
    ):
        """``error``'s errno and reason, about the file ``path``; ``doing``: what could not be
        done to it (None: unknown), ``hint``: what to do afterwards."""
        filename = os.fspath(path) if path is not None else None
        super().__init__(error.errno, error.strerror or str(error), filename)
        self.doing = doing
        self.hint = hint

    def __str__(self) -> str:
        reason = self.REMEDIES.get(self.errno) or (self.strerror or "").lower() or "failed"
        where = f"{_printable(str(self.filename))}: " if self.filename else ""
        doing = f"cannot {self.doing}: " if self.doing else ""
        hint = f"; {self.hint}" if self.hint else ""
        return f"{where}{doing}{reason}{hint}"

    def with_hint(self, hint: str) -> StorageError:
        """The same error, with what to do afterwards added (how to resume a run)."""
        return StorageError(self, self.filename, self.doing, hint)


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
