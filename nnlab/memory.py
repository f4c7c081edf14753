"""Refuse an allocation that cannot fit before making it.

A config may ask for a layer of a trillion units or a generated data set of a trillion samples.
NumPy would fail with a ``MemoryError`` deep inside (or, with the kernel's overcommit, succeed
and then let the out-of-memory killer end the process, or another one). ``check_fits`` compares
the size with the memory available and raises a ``ConfigError`` naming the key instead.

The memory available is the least of what the system has free (``MemAvailable``), what is left
of the process's address space under ``ulimit -v`` (``RLIMIT_AS``), and what is left under the
memory limit of its cgroup (a container's ``--memory``).
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path

from nnlab.errors import ConfigError

_UNLIMITED = 2**60  # cgroup v1 writes "no limit" as a number near 2**63


def available_bytes() -> int | None:
    """Memory available to a new allocation (see the module's note); None when the system
    does not say."""
    found = available()
    return found[0] if found else None


def available() -> tuple[int, str] | None:
    """(bytes, what limits them) for a new allocation, or None when the system does not say."""
    limits = [
        (n, what)
        for n, what in (
            (_system_free(), "available"),
            (_address_space_left(), "left under ulimit -v"),
            (_cgroup_left(), "left under the cgroup's memory limit"),
        )
        if n is not None
    ]
    return min(limits) if limits else None


def _system_free() -> int | None:
    """MemAvailable on Linux, else the physical memory."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def _address_space_left() -> int | None:
    """RLIMIT_AS minus the address space in use (VmSize), if a limit is set."""
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft == resource.RLIM_INFINITY:
            return None
        status = Path("/proc/self/status").read_text(encoding="ascii")
        used = int(re.search(r"^VmSize:\s+(\d+) kB", status, re.M)[1]) * 1024
    except (ImportError, OSError, ValueError, TypeError):
        return None
    return max(0, soft - used)


def _cgroup_left() -> int | None:
    """The memory limit of this process's cgroup minus its usage (cgroup v2 or v1)."""
    for limit_file, usage_file in (
        ("memory.max", "memory.current"),
        ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes"),
    ):
        try:
            limit = Path("/sys/fs/cgroup", limit_file).read_text().strip()
            usage = int(Path("/sys/fs/cgroup", usage_file).read_text())
        except (OSError, ValueError):
            continue
        if limit.isdigit() and int(limit) < _UNLIMITED:
            return max(0, int(limit) - usage)
    return None


def human_bytes(n: int) -> str:
    """``1.5 GB``; sizes beyond petabytes as a power of ten (they may exceed a float)."""
    if n >= 10**18:
        return f"about 10^{len(str(n)) - 1} bytes"
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if n < 1000:
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} PB"


_checked = threading.local()


@contextlib.contextmanager
def checked_already() -> Iterator[None]:
    """In this block (in this thread), ``check_fits`` checks nothing: for allocations whose
    sizes were checked before (the members of a population have their template's shapes, and
    reading the limits, tens of microseconds, would be most of building a thousand of them)."""
    before = getattr(_checked, "skip", False)
    _checked.skip = True
    try:
        yield
    finally:
        _checked.skip = before


def check_fits(nbytes: int, what: str, path: str | None = None) -> None:
    """Raise a ``ConfigError`` at ``path`` if ``nbytes`` exceed the memory available."""
    if getattr(_checked, "skip", False):
        return
    found = available()
    if found is not None and nbytes > found[0]:
        have, limited_by = found
        raise ConfigError(
            f"{what} needs {human_bytes(nbytes)} of memory, more than the "
            f"{human_bytes(have)} {limited_by}",
            path,
        )
