"""Refuse an allocation that cannot fit before making it.

A config may ask for a layer of a trillion units or a generated data set of a trillion samples.
NumPy would fail with a ``MemoryError`` deep inside (or, with the kernel's overcommit, succeed
and then let the out-of-memory killer end the process, or another one). ``check_fits`` compares
the size with the memory available and raises a ``ConfigError`` naming the key instead.
"""

from __future__ import annotations

import os

from nnlab.errors import ConfigError


def available_bytes() -> int | None:
    """Memory available to a new allocation: MemAvailable on Linux, else the physical memory;
    None when the system does not say."""
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


def human_bytes(n: int) -> str:
    """``1.5 GB``; sizes beyond petabytes as a power of ten (they may exceed a float)."""
    if n >= 10**18:
        return f"about 10^{len(str(n)) - 1} bytes"
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if n < 1000:
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} PB"


#: allocations below this are not checked: they fit on any machine nnlab runs on, and reading
#: /proc/meminfo (tens of microseconds) would dominate building a thousand small networks
UNCHECKED_BYTES = 1 << 24


def check_fits(nbytes: int, what: str, path: str | None = None) -> None:
    """Raise a ``ConfigError`` at ``path`` if ``nbytes`` exceed the memory available."""
    if nbytes < UNCHECKED_BYTES:
        return
    have = available_bytes()
    if have is not None and nbytes > have:
        raise ConfigError(
            f"{what} needs {human_bytes(nbytes)} of memory, more than the "
            f"{human_bytes(have)} available",
            path,
        )
