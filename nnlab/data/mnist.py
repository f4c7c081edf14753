"""MNIST: the four standard IDX files, found locally or downloaded, verified, decoded once.

The data folder is the first that is set of: ``data.dir``, ``$NNLAB_DATA_DIR``, the user cache
folder (``$XDG_CACHE_HOME/nnlab/mnist``, else ``~/.cache/nnlab/mnist``). It holds the four files
under their standard names, gzipped or not (a folder whose ``mnist/`` subfolder holds them will
do too). Every file is checked against the SHA-256 of its uncompressed bytes, so a damaged or
wrong file is an error that names it. Missing files are downloaded (``data.download: true``)
from the public mirrors, or those in ``$NNLAB_MNIST_MIRRORS`` (comma-separated base URLs), into
a temporary file in the data folder that is verified before it is renamed into place.

Decoding the .gz files takes about a second, so the decoded arrays are cached as .npy files
named by the checksum, beside the files (or, if their folder is read-only, in the user cache
folder), each with a stamp of the source file it came from (path, size, modification time): a
process then memory-maps the arrays in a few milliseconds, and a changed file is verified and
decoded again.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, TextIO

import numpy as np

from nnlab.data.base import DATASETS, Raw
from nnlab.errors import DataError
from nnlab.files import atomic_write
from nnlab.progress import Transfer
from nnlab.schema import Doc

ENV_DIR = "NNLAB_DATA_DIR"
ENV_MIRRORS = "NNLAB_MNIST_MIRRORS"
MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
TIMEOUT = 30.0  # seconds without progress before a mirror counts as failed
CHUNK = 1 << 20
CACHE_FORMAT = "nnlab-mnist-cache/1"

Array = np.ndarray


@dataclass(frozen=True)
class IdxFile:
    """One of the four files: its standard name (without .gz), the SHA-256 of its uncompressed
    bytes, and the shape of the array it holds."""

    name: str
    sha256: str
    shape: tuple[int, ...]

    @property
    def size(self) -> int:
        """Bytes of the uncompressed file: a 4-byte magic number, 4 bytes per dimension, data."""
        return 4 + 4 * len(self.shape) + int(np.prod(self.shape))

    @property
    def gz(self) -> str:
        return self.name + ".gz"


TRAIN_IMAGES = IdxFile(
    "train-images-idx3-ubyte",
    "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    (60000, 28, 28),
)
TRAIN_LABELS = IdxFile(
    "train-labels-idx1-ubyte",
    "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    (60000,),
)
TEST_IMAGES = IdxFile(
    "t10k-images-idx3-ubyte",
    "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    (10000, 28, 28),
)
TEST_LABELS = IdxFile(
    "t10k-labels-idx1-ubyte",
    "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    (10000,),
)
FILES = (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS)


# ---------------------------------------------------------------- where the files are


def user_cache_dir() -> Path:
    """nnlab's folder in the user cache: ``$XDG_CACHE_HOME/nnlab`` or ``~/.cache/nnlab``."""
    base = os.environ.get("XDG_CACHE_HOME", "").strip()
    return (Path(base) if base else Path.home() / ".cache") / "nnlab"


def data_folder(dir: str | None = None) -> tuple[Path, str]:
    """The folder to read MNIST from, and what chose it (for messages)."""
    if dir:
        return Path(dir).expanduser(), "data.dir"
    env = os.environ.get(ENV_DIR, "").strip()
    if env:
        return Path(env).expanduser(), ENV_DIR
    return user_cache_dir() / "mnist", "the user cache folder"


def find_file(folder: Path, f: IdxFile) -> Path | None:
    """The file in ``folder``, uncompressed or gzipped, or None."""
    for name in (f.name, f.gz):
        path = folder / name
        if path.is_file():
            return path
    return None


def _holds_files(folder: Path) -> bool:
    return any(find_file(folder, f) is not None for f in FILES)


def mirrors() -> list[str]:
    """Base URLs to download from: ``$NNLAB_MNIST_MIRRORS`` (comma-separated) or the defaults."""
    env = os.environ.get(ENV_MIRRORS, "")
    given = [m.strip() for m in env.split(",") if m.strip()]
    return [m if m.endswith("/") else m + "/" for m in given] or list(MIRRORS)


def _names() -> str:
    return ", ".join(f.gz for f in FILES)


# ---------------------------------------------------------------- reading and verifying


def gunzip(raw: bytes) -> bytes:
    """``raw`` decompressed if it is gzipped (by its magic bytes, not a file name), else as is;
    ValueError with the reason for a damaged gzip stream."""
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as e:
        raise ValueError(f"a damaged gzip file ({e})") from None


def problem(data: bytes, f: IdxFile) -> str | None:
    """What is wrong with the uncompressed content of ``f``, or None if it is the real file."""
    if len(data) != f.size:
        return (
            f"not the MNIST file {f.name}: its uncompressed content has {len(data):,} bytes, "
            f"expected {f.size:,} (truncated or a different file)"
        )
    digest = hashlib.sha256(data).hexdigest()
    if digest != f.sha256:
        return (
            f"not the MNIST file {f.name}: the SHA-256 of its uncompressed content is "
            f"{digest}, expected {f.sha256} (corrupted or a different file)"
        )
    return None


def read_verified(path: Path, f: IdxFile) -> bytes:
    """The uncompressed content of a local copy of ``f``, checked against its size and
    SHA-256; a DataError naming the file and the remedy otherwise."""
    remedy = (
        f"delete {path.name} and nnlab downloads it again (data.download: true), "
        "or replace it with an intact copy"
    )
    try:
        data = gunzip(path.read_bytes())
    except OSError as e:
        raise DataError(f"{path}: cannot read the file ({e.strerror or e})") from None
    except ValueError as e:
        raise DataError(f"{path}: {e}; {remedy}") from None
    trouble = problem(data, f)
    if trouble is not None:
        raise DataError(f"{path}: {trouble}; {remedy}")
    return data


def decode(data: bytes, f: IdxFile) -> Array:
    """The array of a verified IDX file (a read-only view of ``data``): images as rows of
    pixels, shape (n, height * width), labels shape (n,), both uint8."""
    ndim = len(f.shape)
    magic = int.from_bytes(data[:4], "big")
    dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    if magic != 0x0800 + ndim or dims != f.shape:  # cannot happen once verified
        raise DataError(f"{f.name}: unexpected IDX header {magic:#x} {dims}")
    arr = np.frombuffer(data, np.uint8, offset=4 + 4 * ndim)
    return arr.reshape(f.shape[0], -1) if ndim > 1 else arr


# ---------------------------------------------------------------- the decoded cache


def writable(folder: Path) -> bool:
    """Whether nnlab may write into an existing folder: the process can, and the folder is not
    marked read-only (no write bit), which is respected even by root (a shared data folder)."""
    try:
        return os.access(folder, os.W_OK) and bool(folder.stat().st_mode & 0o222)
    except OSError:
        return False


def _cache_dirs(folder: Path) -> list[Path]:
    """Where decoded arrays may be cached: beside the files, else (a read-only folder) in the
    user cache folder, under a name derived from the data folder's path."""
    key = hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:16]
    return [folder, user_cache_dir() / "mnist" / "decoded" / key]


def _cache_paths(cache_dir: Path, f: IdxFile) -> tuple[Path, Path]:
    stem = f"{f.name}.{f.sha256[:16]}"
    return cache_dir / f"{stem}.npy", cache_dir / f"{stem}.json"


def _stamp(source: Path, f: IdxFile) -> dict:
    st = source.stat()
    return {
        "format": CACHE_FORMAT,
        "source": str(source.resolve()),
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "sha256": f.sha256,
    }


def cached(folder: Path, source: Path, f: IdxFile) -> Array | None:
    """The cached array of ``source`` (a memory map) if a cache's stamp matches the file as it
    is now, else None."""
    return _read_cache(folder, f, _stamp(source, f))


def _read_cache(folder: Path, f: IdxFile, want: dict) -> Array | None:
    for cache_dir in _cache_dirs(folder):
        npy, stamp = _cache_paths(cache_dir, f)
        try:
            if json.loads(stamp.read_text(encoding="utf-8")) != want:
                continue
            arr = np.load(npy, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError):  # missing, unreadable or truncated: not a cache
            continue
        expected = (f.shape[0], int(np.prod(f.shape[1:]))) if len(f.shape) > 1 else f.shape
        if arr.dtype == np.uint8 and arr.shape == expected:
            return arr
    return None


def _write_cache(folder: Path, f: IdxFile, stamp: dict, arr: Array) -> Path | None:
    """Cache a decoded array (the array first, then the stamp that validates it, each written
    atomically); returns the folder used, or None if no folder was writable."""
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    text = json.dumps(stamp, indent=1) + "\n"
    for cache_dir in _cache_dirs(folder):
        if cache_dir == folder and not writable(folder):
            continue
        npy, stamp_path = _cache_paths(cache_dir, f)
        try:
            cache_dir.mkdir(parents=True, exist_ok=True)
            atomic_write(npy, buf.getvalue())
            atomic_write(stamp_path, text)
        except OSError:  # a read-only folder: try the next
            continue
        return cache_dir
    return None


def load_file(folder: Path, source: Path, f: IdxFile, data: bytes | None = None) -> Array:
    """The decoded array of one file: from the cache, or verified, decoded and cached.
    ``data`` is the file's uncompressed content when the caller has it already."""
    stamp = _stamp(source, f)  # before reading: a change while we read invalidates the cache
    arr = _read_cache(folder, f, stamp)
    if arr is not None:
        return arr
    if data is None:
        data = read_verified(source, f)
    arr = decode(data, f)
    _write_cache(folder, f, stamp, arr)
    return arr


# ---------------------------------------------------------------- downloading


def _stale_partials(folder: Path, f: IdxFile) -> None:
    """Remove partial downloads left by killed processes (their pid no longer runs)."""
    for p in folder.glob(f".{f.gz}.*.part"):
        try:
            pid = int(p.name.split(".")[-2])
            os.kill(pid, 0)
        except (ValueError, ProcessLookupError):
            p.unlink(missing_ok=True)
        except PermissionError:  # another user's live process
            pass


def _fetch(url: str, dest: Path, bar_label: str, stream: TextIO) -> None:
    """Stream ``url`` into ``dest``; raises OSError (URLError, HTTPError, timeouts) or
    ConnectionError when the transfer ends early."""
    import urllib.request

    from nnlab import __version__

    request = urllib.request.Request(url, headers={"User-Agent": f"nnlab/{__version__}"})
    with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        bar = Transfer(bar_label, total, stream)
        try:
            with open(dest, "wb") as out:
                while chunk := response.read(CHUNK):
                    out.write(chunk)
                    bar.update(len(chunk))
                out.flush()
                os.fsync(out.fileno())
        except BaseException:
            bar.close("failed")
            raise
        if total is not None and bar.done != total:
            bar.close("failed")
            raise ConnectionError(f"the connection closed after {bar.done:,} of {total:,} bytes")
        bar.close(f"{bar.done / 1e6:.1f} MB from {url}")


def download(
    f: IdxFile, folder: Path, urls: list[str] | None = None, stream: TextIO | None = None
) -> tuple[Path, bytes]:
    """Download ``f`` into ``folder``, trying each mirror in turn until one gives a file with
    the right checksum; returns (the file, its uncompressed content). The download goes to a
    temporary file in ``folder`` that is renamed into place only once verified, and removed
    otherwise. Raises DataError listing every mirror's failure."""
    from http.client import HTTPException

    stream = stream or sys.stderr
    urls = urls if urls is not None else mirrors()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"{folder}: cannot create the data folder ({e.strerror or e})") from None
    if not writable(folder):
        raise DataError(
            f"{folder}: the folder is read-only, so the download cannot go there; point "
            f"data.dir or {ENV_DIR} at a writable folder, or put the files there"
        )
    _stale_partials(folder, f)
    target = folder / f.gz
    failures = []
    for base in urls:
        url = base + f.gz
        tmp = folder / f".{f.gz}.{os.getpid()}.part"
        try:
            try:
                _fetch(url, tmp, f"mnist: downloading {f.gz}", stream)
            except PermissionError as e:
                raise DataError(
                    f"{folder}: cannot write the download there ({e.strerror}); point "
                    f"data.dir or {ENV_DIR} at a writable folder, or put the files there"
                ) from None
            except (OSError, ValueError, HTTPException) as e:  # URLError, timeouts, bad URLs
                failures.append(f"{url}: {_reason(e)}")
                continue
            try:
                data = gunzip(tmp.read_bytes())
                trouble = problem(data, f)
            except ValueError as e:
                trouble = str(e)
            if trouble is not None:
                failures.append(f"{url}: {trouble}")
                stream.write(f"mnist: rejected {url}: {trouble}\n")
                continue
            os.replace(tmp, target)
            return target, data
        finally:
            tmp.unlink(missing_ok=True)
    raise DataError(
        f"MNIST file {f.gz} is not in {folder} and no mirror could provide it "
        f"({'; '.join(failures) or 'no mirrors given'})"
    )


def _reason(e: BaseException) -> str:
    import urllib.error

    if isinstance(e, urllib.error.HTTPError):
        return f"HTTP {e.code} {e.reason}"
    if isinstance(e, urllib.error.URLError):
        return str(e.reason)
    return str(e) or type(e).__name__


# ---------------------------------------------------------------- the data set


def locate(
    dir: str | None = None, download_missing: bool = True
) -> tuple[dict[IdxFile, Path], dict[IdxFile, bytes]]:
    """The four files, downloading the missing ones if allowed, and the verified content of
    those just downloaded. DataError if they cannot be had, naming the folder, the four file
    names and how to point nnlab elsewhere."""
    folder, how = data_folder(dir)
    if not _holds_files(folder) and _holds_files(folder / "mnist"):
        folder = folder / "mnist"
    found = {f: find_file(folder, f) for f in FILES}
    missing = [f for f, p in found.items() if p is None]
    if not missing:
        return found, {}  # type: ignore[return-value]
    where = (
        f"Put the four files in {folder} ({how}): {_names()} (gzipped or not), or point "
        f"data.dir or {ENV_DIR} at a folder that holds them"
    )
    if not download_missing:
        state = (
            "does not exist" if not folder.is_dir() else "lacks " + ", ".join(f.gz for f in missing)
        )
        raise DataError(
            f"MNIST: {folder} {state}, and data.download is false. {where}, "
            "or set data.download: true to download them"
        )
    fresh = {}
    for f in missing:
        try:
            found[f], fresh[f] = download(f, folder)
        except DataError as e:
            raise DataError(f"{e}. {where}") from None
    return found, fresh  # type: ignore[return-value]


@DATASETS.register("mnist", defaults={"scale": "unit"})
def mnist(
    dir: Annotated[
        str | None,
        Doc(
            "the folder holding the four MNIST files, gzipped or not "
            f"(null: ${ENV_DIR}, else the user cache folder ~/.cache/nnlab/mnist)"
        ),
    ] = None,
    download: Annotated[
        bool, Doc("download missing files from the public mirrors into that folder, verified")
    ] = True,
) -> Raw:
    """MNIST handwritten digits: 60,000 training and 10,000 test images, 28x28 pixels in 0..255
    (as rows of 784), 10 classes; the files are verified by SHA-256 and downloaded if missing."""
    return _load(dir, download)


def _load(dir: str | None, download_missing: bool) -> Raw:
    paths, fresh = locate(dir, download_missing)
    folder = paths[TRAIN_IMAGES].parent
    arrays = {f: load_file(folder, paths[f], f, fresh.get(f)) for f in FILES}
    return Raw(
        arrays[TRAIN_IMAGES],
        arrays[TRAIN_LABELS],
        X_test=arrays[TEST_IMAGES],
        y_test=arrays[TEST_LABELS],
        n_classes=10,
        unit_scale=255.0,
        description=f"MNIST from {folder}",
        image_shape=(28, 28),
    )
