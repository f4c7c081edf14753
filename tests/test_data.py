"""Data sets: the toy points, digits, splits fixed by the seed, scaling, subsets, CSV files."""

from __future__ import annotations

import numpy as np
import pytest

from nnlab.data import DATASETS, load
from nnlab.errors import ConfigError, DataError
from nnlab.registry import Registry


def get(spec, seed=0, dtype=np.float32, registry: Registry = DATASETS):
    return load(registry.resolve(spec, "data"), np.random.default_rng(seed), dtype)


def test_xor_and_threshold_are_the_seed_points():
    d = get("xor")
    np.testing.assert_array_equal(d.train.X, [[0, 0], [0, 1], [1, 0], [1, 1]])
    np.testing.assert_array_equal(d.train.y, [0, 1, 1, 0])
    d = get("threshold")
    np.testing.assert_array_equal(d.train.X[:, 0], [0, 0, 2, 2, 9])
    np.testing.assert_array_equal(d.train.y, [0, 0, 1, 1, 0])
    assert d.train.X.dtype == np.float32 and d.n_classes == 2


def test_digits_as_scikit_learn_ships_them():
    d = get({"name": "digits", "test_split": 0.0, "scale": "none"})
    assert d.train.X.shape == (1797, 64) and d.input_shape == (64,)
    assert d.train.X.min() == 0 and d.train.X.max() == 16
    assert np.bincount(d.train.y).tolist() == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]


def test_digits_default_split_and_unit_scale():
    d = get("digits")
    assert d.sizes == {"train": 1438, "test": 359}
    assert d.train.X.max() == 1.0 and d.scale == 16.0


def test_splits_are_disjoint_complete_and_fixed_by_the_seed():
    spec = {"name": "digits", "validation_split": 0.1, "test_split": 0.2, "scale": "none"}
    a, b, c = get(spec, 1), get(spec, 1), get(spec, 2)
    np.testing.assert_array_equal(a.val.X, b.val.X)
    np.testing.assert_array_equal(a.test.X, b.test.X)
    assert not np.array_equal(a.test.X, c.test.X)
    rows = lambda s: {r.tobytes() for r in s.X.astype(np.uint8)}  # noqa: E731
    train, val, test = rows(a.train), rows(a.val), rows(a.test)
    assert len(a.train) + len(a.val) + len(a.test) == 1797
    # (a few digits images are duplicates, so compare sizes rather than exact disjointness)
    assert len(train & test) < 5 and len(val & test) < 5


def test_changing_the_validation_split_keeps_the_test_set():
    a = get({"name": "digits", "validation_split": 0.1}, 3)
    b = get({"name": "digits", "validation_split": 0.3}, 3)
    np.testing.assert_array_equal(a.test.X, b.test.X)


def test_standard_scaling_uses_training_statistics_only():
    d = get({"name": "digits", "scale": "standard"}, dtype=np.float64)
    m, s = d.train.X.mean(axis=0), d.train.X.std(axis=0)
    np.testing.assert_allclose(m, 0, atol=1e-9)
    np.testing.assert_allclose(s[s > 0], 1, atol=1e-9)
    assert not np.allclose(d.test.X.mean(axis=0), 0, atol=1e-3)


def test_minmax_scaling():
    d = get({"name": "threshold", "scale": "minmax"})
    np.testing.assert_allclose(d.train.X[:, 0], [0, 0, 2 / 9, 2 / 9, 1], rtol=1e-6)


def test_subset_and_one_hot_labels():
    d = get({"name": "digits", "subset": 64, "labels": "one_hot"})
    assert len(d.train) == 64 and d.train.y.shape == (64, 10)
    np.testing.assert_array_equal(d.train.y.sum(axis=1), 1)
    assert d.labels(d.train).shape == (64,)


def test_subset_larger_than_the_data_is_an_error():
    with pytest.raises(ConfigError, match="larger than"):
        get({"name": "xor", "subset": 10})


def test_shuffle_labels_permutes_training_labels_only():
    a = get({"name": "digits"}, 4)
    b = get({"name": "digits", "shuffle_labels": True}, 4)
    np.testing.assert_array_equal(np.sort(a.train.y), np.sort(b.train.y))
    assert np.mean(a.train.y == b.train.y) < 0.3
    np.testing.assert_array_equal(a.test.y, b.test.y)


def test_csv_classification_with_text_labels(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text("a,b,kind\n1,2,cat\n3,4,dog\n5,6,cat\n")
    d = get({"name": "csv", "path": str(p), "target": "kind"}, dtype=np.float64)
    np.testing.assert_array_equal(d.train.X, [[1, 2], [3, 4], [5, 6]])
    np.testing.assert_array_equal(d.train.y, [0, 1, 0])
    assert d.class_names == ["cat", "dog"]


def test_csv_regression_without_header(tmp_path):
    p = tmp_path / "r.csv"
    p.write_text("".join(f"{i},{i * 0.5 + 0.25}\n" for i in range(20)))
    d = get({"name": "csv", "path": str(p)})
    assert d.task == "regression" and d.n_classes is None
    assert d.train.y[3] == pytest.approx(1.75)


@pytest.mark.parametrize(
    "text, words",
    [
        ("", "no data rows"),
        ("a,b\n", "no data rows"),
        ("1,2\n3\n", "row 2 has 1 fields"),
        ("1,1\nx,0\n", "not a number"),
        ("1,nan\n2,0\n", None),
    ],
)
def test_csv_errors_name_the_file(tmp_path, text, words):
    p = tmp_path / "bad.csv"
    p.write_text(text)
    spec = (
        {"name": "csv", "path": str(p), "target": 0}
        if words is None
        else {"name": "csv", "path": str(p)}
    )
    with pytest.raises(DataError) as info:
        get(spec)
    assert "bad.csv" in str(info.value) or "NaN" in str(info.value)
    if words:
        assert words in str(info.value)


def test_csv_missing_file(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        get({"name": "csv", "path": str(tmp_path / "none.csv")})


# ---------------------------------------------------------------- broken files


def csv_error(tmp_path, content: str | bytes, name: str = "bad.csv", **options) -> str:
    p = tmp_path / name
    p.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(DataError) as info:
        get({"name": "csv", "path": str(p), **options})
    message = str(info.value)
    assert message.startswith(str(p)), message  # the file first
    assert "\n" not in message
    return message


@pytest.mark.parametrize(
    "content, words",
    [
        ("", ["no data rows (it is empty)", "a row per sample"]),
        ("\n \n", ["no data rows (it is empty)"]),
        ("x1,x2,y\n", ["no data rows (only a header)"]),
        (b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe", ["not a text file", "UTF-8"]),
    ],
)
def test_an_empty_or_binary_csv_names_the_file_and_the_remedy(tmp_path, content, words):
    message = csv_error(tmp_path, content)
    for w in words:
        assert w in message


@pytest.mark.parametrize(
    "content, where, what",
    [
        ("a,b,y\n1,2,0\n3,nan,1\n5,6,0\n", "row 3, column 2 ('b')", "'nan' is not a finite"),
        ("a,b,y\n1,2,0\n3,4,1\n-inf,6,0\n", "row 4, column 1 ('a')", "'-inf' is not a finite"),
        ("a,b,y\n1,,0\n3,4,1\n", "row 2, column 2 ('b')", "is empty"),
        ("1,2,0\n3,x,1\n", "row 2, column 2", "'x' is not a number"),
    ],
)
def test_nan_and_missing_features_name_the_row_and_column(tmp_path, content, where, what):
    message = csv_error(tmp_path, content)
    assert where in message and what in message and "fill in or remove" in message


def test_nan_in_a_regression_target_names_the_row(tmp_path):
    rows = "".join(f"{i},{i * 0.37:.2f}\n" for i in range(30)) + "30,NaN\n"
    message = csv_error(tmp_path, rows, task="regression")
    assert "row 31, column 2" in message and "'NaN' is not a finite number" in message


def test_a_missing_class_and_a_single_class_are_errors(tmp_path):
    assert "row 3 has no target" in csv_error(tmp_path, "a,y\n1,cat\n2,\n3,dog\n")
    message = csv_error(tmp_path, "a,y\n1,cat\n2,cat\n")
    assert "every row has the class 'cat'" in message and "at least two classes" in message


def test_class_labels_are_encoded_so_they_cannot_be_out_of_range(tmp_path):
    # labels 1..3 (or any values) are class names: the classes are numbered from 0 by value
    p = tmp_path / "c.csv"
    p.write_text("x,label\n0.5,3\n0.1,1\n0.7,2\n0.2,1\n0.9,3\n0.4,2\n")
    d = get({"name": "csv", "path": str(p), "task": "classification"})
    assert d.class_names == ["1", "2", "3"] and d.n_classes == 3
    np.testing.assert_array_equal(d.train.y, [2, 0, 1, 0, 2, 1])


def only_data_set(monkeypatch, name: str, factory) -> Registry:
    """A registry of data sets that holds ``factory`` as ``name`` alone, in place of DATASETS
    for this test (the real registry is left as it is)."""
    import nnlab.data.base

    datasets = Registry(DATASETS.kind, DATASETS.key, DATASETS.common, DATASETS.runtime)
    datasets.register(name)(factory)
    monkeypatch.setattr(nnlab.data.base, "DATASETS", datasets)
    return datasets


def test_labels_outside_the_classes_of_a_data_set_are_an_error(monkeypatch, tmp_path):
    from nnlab.data.base import Raw

    def broken():
        X = np.zeros((5, 2))
        return Raw(X, np.array([0, 1, 2, 1, 0]), n_classes=2, source=str(tmp_path / "f.bin"))

    datasets = only_data_set(monkeypatch, "broken", broken)
    with pytest.raises(DataError) as info:
        get("broken", registry=datasets)
    message = str(info.value)
    assert message.startswith(str(tmp_path / "f.bin"))
    assert "sample 3 has the label 2, outside 0..1" in message and "fix or remove" in message


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nan_inputs_of_any_data_set_are_refused(monkeypatch, dtype):
    from nnlab.data.base import Raw

    X = np.ones((6, 3))
    X[4, 1] = np.nan
    datasets = only_data_set(monkeypatch, "holey", lambda: Raw(X, np.arange(6) % 2))
    with pytest.raises(DataError, match=r"data 'holey': 1 samples have NaN or infinite inputs"):
        get("holey", dtype=dtype, registry=datasets)


def test_a_missing_folder_or_a_folder_for_a_file(tmp_path):
    with pytest.raises(DataError) as info:
        get({"name": "csv", "path": str(tmp_path / "nowhere" / "d.csv")})
    assert f"the folder {tmp_path / 'nowhere'} does not exist" in str(info.value)
    with pytest.raises(DataError, match="is a folder"):
        get({"name": "csv", "path": str(tmp_path)})


def test_a_bad_delimiter_is_a_config_error(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text("1,0\n2,1\n")
    with pytest.raises(ConfigError, match=r"data\.delimiter"):
        get({"name": "csv", "path": str(p), "delimiter": ";;"})


def test_the_cli_reports_a_broken_csv_in_one_line(tmp_path, runs, write_config):
    from conftest import invoke_nnlab

    (tmp_path / "d.csv").write_text("a,b,y\n1,2,0\n3,inf,1\n")
    config = write_config(
        f"data: {{name: csv, path: {tmp_path / 'd.csv'}}}\n"
        "model: {layers: [{type: dense, units: 1, activation: sigmoid}]}\n"
        "loss: binary_crossentropy\n"
    )
    proc = invoke_nnlab("train", config, "--runs-dir", runs)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "row 3, column 2 ('b')" in proc.stderr
    assert list(runs.iterdir()) == []
