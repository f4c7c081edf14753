"""MNIST: finding the files, verifying them, the decoded cache, and downloading from mirrors.

The real data comes from ``../shared/data/mnist`` (these machines have no internet); tests that
need it are skipped where it is missing. Downloads are tested against a real HTTP server on
127.0.0.1 started here, never the internet: every test points ``NNLAB_MNIST_MIRRORS`` at local
addresses and ``XDG_CACHE_HOME`` at a temporary folder.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import io
import json
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from conftest import MNIST_DIR, NO_MNIST, invoke_nnlab
from nnlab.data import DATASETS, load
from nnlab.data import mnist as M
from nnlab.errors import ConfigError, DataError

SHARED = MNIST_DIR  # the real files: $NNLAB_DATA_DIR or ../shared/data/mnist
HAVE_SHARED = MNIST_DIR is not None
needs_shared = pytest.mark.skipif(not HAVE_SHARED, reason=NO_MNIST)
TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


DEAD = f"http://127.0.0.1:{_free_port()}/"  # nothing listens there: connection refused


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    """No test reads the user's cache or settings or reaches the internet."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv(M.ENV_DIR, raising=False)
    monkeypatch.setenv(M.ENV_MIRRORS, DEAD)


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory) -> Path:
    """One user cache folder for the tests that only read the real data: decoded once."""
    return tmp_path_factory.mktemp("xdg-shared")


@pytest.fixture
def real(monkeypatch, shared_cache):
    """Read the real files through NNLAB_DATA_DIR, with the shared cache."""
    if not HAVE_SHARED:
        pytest.skip(needs_shared.kwargs["reason"])
    monkeypatch.setenv(M.ENV_DIR, str(SHARED))
    monkeypatch.setenv("XDG_CACHE_HOME", str(shared_cache))


def get(spec, seed=0):
    return load(DATASETS.resolve(spec, "data"), np.random.default_rng(seed), np.float32)


# ---------------------------------------------------------------- the real data


def test_real_mnist_shapes_dtypes_scaling_and_label_counts(real):
    raw = M.mnist()
    assert raw.X.shape == (60000, 784) and raw.X.dtype == np.uint8
    assert raw.X_test.shape == (10000, 784) and raw.y_test.dtype == np.uint8
    assert raw.X.max() == 255 and raw.image_shape == (28, 28)
    d = get("mnist")
    assert d.sizes == {"train": 60000, "test": 10000} and d.input_shape == (784,)
    assert d.train.X.dtype == np.float32 and d.train.X.max() == 1.0 and d.scale == 255.0
    assert np.bincount(d.train.y).tolist() == TRAIN_COUNTS
    assert np.bincount(d.test.y).tolist() == TEST_COUNTS
    assert d.image_shape == (28, 28) and d.n_classes == 10
    # the first training image is a 5 with its ink in the middle of the 28x28 frame
    img = raw.X[0].reshape(28, 28)
    assert raw.y[0] == 5 and img[:4].sum() == 0 and img[10:18, 10:18].sum() > 0


def test_validation_split_by_seed_and_the_official_test_set(real):
    spec = {"name": "mnist", "validation_split": 0.1}
    a, b, c = get(spec, 1), get(spec, 1), get(spec, 2)
    assert a.sizes == {"train": 54000, "val": 6000, "test": 10000}
    np.testing.assert_array_equal(a.val.y, b.val.y)
    np.testing.assert_array_equal(a.val.X, b.val.X)
    assert not np.array_equal(a.val.y, c.val.y)
    np.testing.assert_array_equal(a.test.X, c.test.X)  # the official 10,000, whatever the seed
    counts = np.bincount(a.train.y, minlength=10) + np.bincount(a.val.y, minlength=10)
    assert counts.tolist() == TRAIN_COUNTS  # train and validation partition the 60,000


def test_a_test_split_is_refused_because_mnist_has_its_own(real):
    with pytest.raises(ConfigError, match="has its own test set"):
        get({"name": "mnist", "test_split": 0.1})


@needs_shared
def test_train_from_the_command_line(runs, shared_cache, write_config):
    cfg = write_config(
        "data: {name: mnist, subset: 2000}\n"
        "model: {layers: [{type: dense, units: 32, activation: relu},"
        " {type: dense, units: 10, activation: softmax}]}\n"
        "loss: categorical_crossentropy\n"
        "training: {epochs: 2, batch_size: 128}\n"
    )
    proc = invoke_nnlab(
        "train", cfg, "--runs-dir", runs, NNLAB_DATA_DIR=str(SHARED), XDG_CACHE_HOME=shared_cache
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((Path(proc.stdout.strip().splitlines()[-1]) / "summary.json").read_text())
    assert summary["data"] == {"name": "mnist", "train": 2000, "test": 10000}
    assert summary["test"]["accuracy"] > 0.7  # 2 epochs on 2,000 images: far above chance


# ---------------------------------------------------------------- where the files come from


def test_folder_order_data_dir_then_env_then_user_cache(monkeypatch, tmp_path):
    monkeypatch.setenv(M.ENV_DIR, str(tmp_path / "env"))
    assert M.data_folder(str(tmp_path / "cfg")) == (tmp_path / "cfg", "data.dir")
    assert M.data_folder(None) == (tmp_path / "env", M.ENV_DIR)
    monkeypatch.delenv(M.ENV_DIR)
    assert M.data_folder(None)[0] == tmp_path / "xdg" / "nnlab" / "mnist"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert M.data_folder(None)[0] == tmp_path / "home" / ".cache" / "nnlab" / "mnist"


def _link_shared(folder: Path) -> Path:
    folder.mkdir(parents=True)
    for f in M.FILES:
        (folder / f.gz).symlink_to(SHARED / f.gz)
    return folder


@needs_shared
def test_a_data_root_with_an_mnist_subfolder_is_found(monkeypatch, tmp_path):
    _link_shared(tmp_path / "root" / "mnist")
    monkeypatch.setenv(M.ENV_DIR, str(tmp_path / "root"))
    paths, fresh = M.locate()
    assert paths[M.TRAIN_IMAGES] == tmp_path / "root" / "mnist" / M.TRAIN_IMAGES.gz
    assert fresh == {}


def test_missing_files_without_download_say_where_to_put_them(tmp_path):
    folder = tmp_path / "nowhere"
    with pytest.raises(DataError) as info:
        get({"name": "mnist", "dir": str(folder), "download": False})
    text = str(info.value)
    assert str(folder) in text and "does not exist" in text and "data.dir" in text
    assert M.ENV_DIR in text and "download: true" in text
    for f in M.FILES:
        assert f.gz in text
    assert not folder.exists()


def test_dir_and_download_are_validated():
    with pytest.raises(ConfigError) as info:
        DATASETS.resolve({"name": "mnist", "dir": 3}, "data")
    assert info.value.path == "data.dir"
    with pytest.raises(ConfigError, match="Did you mean 'download'"):
        DATASETS.resolve({"name": "mnist", "downlaod": False}, "data")


# ---------------------------------------------------------------- verification

LABELS = M.TEST_LABELS  # the smallest file (10,008 bytes), for fast tests


def _labels_bytes() -> bytes:
    return gzip.decompress((SHARED / LABELS.gz).read_bytes())


@needs_shared
def test_uncompressed_and_gzipped_files_give_the_same_array(tmp_path):
    (tmp_path / LABELS.name).write_bytes(_labels_bytes())
    plain = M.load_file(tmp_path, tmp_path / LABELS.name, LABELS)
    gz = M.load_file(SHARED, SHARED / LABELS.gz, LABELS)
    assert plain.shape == (10000,) and plain.dtype == np.uint8
    np.testing.assert_array_equal(plain, gz)
    assert np.bincount(plain).tolist() == TEST_COUNTS


@needs_shared
@pytest.mark.parametrize(
    "damage, words",
    [
        (lambda gz, raw: gz[: len(gz) // 2], "damaged gzip file"),
        (lambda gz, raw: gzip.compress(raw[:-10]), "10,008"),
        (lambda gz, raw: gzip.compress(raw[:100] + bytes([raw[100] ^ 1]) + raw[101:]), "SHA-256"),
        (lambda gz, raw: raw[:5000], "truncated"),
    ],
    ids=["truncated-gzip", "short-content", "one-bit-flipped", "short-uncompressed"],
)
def test_a_damaged_file_is_an_error_naming_it_and_the_remedy(tmp_path, damage, words):
    path = tmp_path / LABELS.gz
    path.write_bytes(damage((SHARED / LABELS.gz).read_bytes(), _labels_bytes()))
    with pytest.raises(DataError) as info:
        M.load_file(tmp_path, path, LABELS)
    text = str(info.value)
    assert text.startswith(str(path)) and words in text
    assert f"delete {LABELS.gz}" in text and "\n" not in text


@needs_shared
def test_the_cli_reports_a_damaged_file_in_one_line(tmp_path, runs, write_config):
    folder = _link_shared(tmp_path / "data")
    (folder / M.TRAIN_IMAGES.gz).unlink()
    (folder / M.TRAIN_IMAGES.gz).write_bytes(b"\x1f\x8b" + b"not really gzip")
    cfg = write_config(
        f"data: {{name: mnist, dir: '{folder}'}}\n"
        "model: {layers: [{type: dense, units: 10, activation: softmax}]}\n"
        "loss: categorical_crossentropy\n"
    )
    proc = invoke_nnlab("train", cfg, "--runs-dir", runs, XDG_CACHE_HOME=tmp_path / "xdg")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1
    assert str(folder / M.TRAIN_IMAGES.gz) in proc.stderr and "damaged gzip" in proc.stderr


# ---------------------------------------------------------------- the decoded cache


def cache_files(folder: Path, f: M.IdxFile) -> tuple[Path, Path]:
    """The decoded cache of ``f`` in ``folder`` as the README names it: the array
    (``train-images-idx3-ubyte.ba891046e6505d7a.npy``) and its ``.json`` stamp."""
    stem = f"{f.name}.{f.sha256[:16]}"
    return folder / f"{stem}.npy", folder / f"{stem}.json"


def _copy_shared(folder: Path, files=M.FILES) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for f in files:
        shutil.copy(SHARED / f.gz, folder / f.gz)
    return folder


@needs_shared
def test_the_second_load_maps_the_cached_npy_without_decoding(monkeypatch, tmp_path):
    folder = _copy_shared(tmp_path / "data")
    first = M.mnist(dir=str(folder))
    npy, stamp = cache_files(folder, M.TRAIN_IMAGES)
    assert npy.is_file() and stamp.is_file()  # cached beside the files, named by checksum
    assert npy.name == "train-images-idx3-ubyte.ba891046e6505d7a.npy"
    assert json.loads(stamp.read_text())["sha256"] == M.TRAIN_IMAGES.sha256

    def no_decoding(*args):
        raise AssertionError("the cache was not used")

    monkeypatch.setattr(M, "read_verified", no_decoding)
    second = M.mnist(dir=str(folder))
    assert isinstance(second.X, np.memmap) and Path(second.X.filename) == npy
    np.testing.assert_array_equal(first.X, second.X)
    np.testing.assert_array_equal(first.y_test, second.y_test)


@needs_shared
def test_a_changed_file_invalidates_the_cache(tmp_path):
    folder = _copy_shared(tmp_path / "data", [LABELS])
    path = folder / LABELS.gz
    M.load_file(folder, path, LABELS)
    _, stamp = cache_files(folder, LABELS)
    assert M.cached(folder, path, LABELS) is not None
    # replaced by a damaged copy: the cache is not used, the damage is reported
    raw = _labels_bytes()
    path.write_bytes(gzip.compress(raw[:-1] + bytes([raw[-1] ^ 1])))
    with pytest.raises(DataError, match="SHA-256"):
        M.load_file(folder, path, LABELS)
    # replaced by the intact content, uncompressed: verified again and the stamp renewed
    path.write_bytes(_labels_bytes())
    arr = M.load_file(folder, path, LABELS)
    assert np.bincount(arr).tolist() == TEST_COUNTS
    assert json.loads(stamp.read_text())["size"] == LABELS.size


@needs_shared
def test_a_damaged_cache_is_ignored_and_rewritten(tmp_path):
    folder = _copy_shared(tmp_path / "data", [LABELS])
    M.load_file(folder, folder / LABELS.gz, LABELS)
    npy, _ = cache_files(folder, LABELS)
    npy.write_bytes(npy.read_bytes()[:200])  # as if killed while writing, without the rename
    assert M.cached(folder, folder / LABELS.gz, LABELS) is None
    arr = M.load_file(folder, folder / LABELS.gz, LABELS)
    assert np.bincount(arr).tolist() == TEST_COUNTS
    assert M.cached(folder, folder / LABELS.gz, LABELS) is not None


@needs_shared
def test_a_read_only_folder_is_cached_in_the_user_cache_folder(tmp_path):
    folder = _copy_shared(tmp_path / "ro", [LABELS])
    folder.chmod(0o555)
    try:
        M.load_file(folder, folder / LABELS.gz, LABELS)
        assert sorted(p.name for p in folder.iterdir()) == [LABELS.gz]  # nothing written
        cached = list((tmp_path / "xdg" / "nnlab" / "mnist" / "decoded").glob("*/*.npy"))
        assert len(cached) == 1 and LABELS.sha256[:16] in cached[0].name
        assert M.cached(folder, folder / LABELS.gz, LABELS) is not None
    finally:
        folder.chmod(0o755)


# ---------------------------------------------------------------- downloading


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves a folder; under /cut/ it promises the whole file but sends half and hangs up."""

    def do_GET(self):
        if not self.path.startswith("/cut/"):
            return super().do_GET()
        path = Path(self.directory) / "good" / self.path[len("/cut/") :]
        body = path.read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: len(body) // 2])
        self.close_connection = True

    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path):
    """A real HTTP server on 127.0.0.1 serving tmp_path/www; yields its base URL."""
    www = tmp_path / "www"
    www.mkdir()
    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_Handler, directory=str(www))
    )
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/", www
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def _tiny() -> tuple[M.IdxFile, bytes]:
    """A small IDX file and its spec, for download tests that need no real data."""
    labels = np.arange(50, dtype=np.uint8) % 10
    raw = (0x0801).to_bytes(4, "big") + (50).to_bytes(4, "big") + labels.tobytes()
    return M.IdxFile("tiny-labels-idx1-ubyte", hashlib.sha256(raw).hexdigest(), (50,)), raw


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_download_skips_a_dead_mirror_a_missing_file_and_a_corrupt_copy(server, tmp_path):
    base, www = server
    f, raw = _tiny()
    for name, content in (("good", raw), ("bad", raw[:-1] + bytes([raw[-1] ^ 1]))):
        (www / name).mkdir()
        (www / name / f.gz).write_bytes(gzip.compress(content))
    (www / "empty").mkdir()
    log = io.StringIO()
    target = tmp_path / "data"
    urls = [DEAD, base + "empty/", base + "bad/", base + "good/"]
    path, data = M.download(f, target, urls, stream=log)
    assert path == target / f.gz and gzip.decompress(path.read_bytes()) == raw and data == raw
    assert _leftovers(target) == []
    assert f"rejected {base}bad/{f.gz}" in log.getvalue() and "SHA-256" in log.getvalue()
    assert f"from {base}good/{f.gz}" in log.getvalue()  # a line per file off a terminal


def test_a_transfer_cut_short_leaves_nothing_behind(server, tmp_path):
    base, www = server
    f, raw = _tiny()
    (www / "good").mkdir()
    (www / "good" / f.gz).write_bytes(gzip.compress(raw))
    target = tmp_path / "data"
    with pytest.raises(DataError) as info:
        M.download(f, target, [base + "cut/"], stream=io.StringIO())
    assert "connection closed after" in str(info.value)
    assert list(target.iterdir()) == []


def test_no_mirror_reachable_names_each_failure(server, tmp_path):
    base, _ = server
    f, _ = _tiny()
    target = tmp_path / "data"
    with pytest.raises(DataError) as info:
        M.download(f, target, [DEAD, base + "nothing/"], stream=io.StringIO())
    text = str(info.value)
    assert DEAD + f.gz in text and "refused" in text.lower()
    assert base + "nothing/" + f.gz in text and "HTTP 404" in text
    assert list(target.iterdir()) == []


def test_a_partial_download_of_a_dead_process_is_removed(server, tmp_path):
    base, www = server
    f, raw = _tiny()
    (www / "good").mkdir()
    (www / "good" / f.gz).write_bytes(gzip.compress(raw))
    target = tmp_path / "data"
    target.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], text=True,
                          capture_output=True, check=True)  # fmt: skip
    stale = target / f".{f.gz}.{int(dead.stdout)}.part"
    stale.write_bytes(b"half a file")
    M.download(f, target, [base + "good/"], stream=io.StringIO())
    assert not stale.exists() and (target / f.gz).is_file()


def test_a_read_only_target_folder_is_refused(tmp_path):
    f, _ = _tiny()
    target = tmp_path / "ro"
    target.mkdir(mode=0o555)
    try:
        with pytest.raises(DataError, match="read-only"):
            M.download(f, target, [DEAD], stream=io.StringIO())
    finally:
        target.chmod(0o755)


def test_mirrors_come_from_the_environment(monkeypatch):
    monkeypatch.setenv(M.ENV_MIRRORS, " http://a.example/x , http://b.example/y/ ,,")
    assert M.mirrors() == ["http://a.example/x/", "http://b.example/y/"]
    monkeypatch.delenv(M.ENV_MIRRORS)
    assert M.mirrors() == list(M.MIRRORS)


@needs_shared
def test_first_use_downloads_verifies_and_caches_all_four_files(server, monkeypatch, tmp_path):
    base, www = server
    _copy_shared(www / "good")
    (www / "bad").mkdir()  # holds a corrupt copy of one file and nothing else
    bad = gzip.decompress((SHARED / M.TRAIN_LABELS.gz).read_bytes())
    (www / "bad" / M.TRAIN_LABELS.gz).write_bytes(gzip.compress(bad[:-1] + bytes([bad[-1] ^ 1])))
    monkeypatch.setenv(M.ENV_MIRRORS, f"{DEAD},{base}bad/,{base}good/")
    d = get("mnist")  # no data.dir, no NNLAB_DATA_DIR: the user cache folder
    folder = tmp_path / "xdg" / "nnlab" / "mnist"
    assert sorted(p.name for p in folder.glob("*.gz")) == sorted(f.gz for f in M.FILES)
    assert _leftovers(folder) == []
    assert np.bincount(d.train.y).tolist() == TRAIN_COUNTS
    assert all(M.cached(folder, folder / f.gz, f) is not None for f in M.FILES)
    monkeypatch.setenv(M.ENV_MIRRORS, DEAD)  # no network any more: the files are there
    np.testing.assert_array_equal(get("mnist").test.X, d.test.X)


def test_the_cli_without_network_names_the_folder_and_the_files(tmp_path, runs, write_config):
    cfg = write_config(
        "data: mnist\n"
        "model: {layers: [{type: dense, units: 10, activation: softmax}]}\n"
        "loss: categorical_crossentropy\n"
    )
    env = {"XDG_CACHE_HOME": str(tmp_path / "xdg"), M.ENV_MIRRORS: DEAD}
    proc = invoke_nnlab("train", cfg, "--runs-dir", runs, **env)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1
    folder = tmp_path / "xdg" / "nnlab" / "mnist"
    assert str(folder) in proc.stderr and M.ENV_DIR in proc.stderr
    assert all(f.gz in proc.stderr for f in M.FILES)
    assert _leftovers(folder) == [] and not any(runs.iterdir())
