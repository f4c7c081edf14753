"""Paths: a run or sweep name with ``..`` or ``/`` (from --name or ``name:`` in a file), a
--runs-dir trick or an edited index.json cannot make nnlab write or delete outside the runs
folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import CONFIGS, invoke_nnlab
from nnlab.config import load_config
from nnlab.lifecycle import train
from nnlab.runs import safe_name

THRESHOLD = (CONFIGS / "threshold.yaml").read_text().replace("epochs: 10000", "epochs: 5")
HOSTILE_NAMES = ["../../evil", "/tmp/evil", "..", ".", "a/../../b", "~root", "..\\..\\x", "\x00"]


def everything(root: Path) -> set[Path]:
    return {p.relative_to(root) for p in root.rglob("*")}


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_safe_names_are_one_plain_folder_name(name):
    clean = safe_name(name)
    assert clean and "/" not in clean and "\\" not in clean and ".." not in clean
    assert not clean.startswith(".") and Path(clean).name == clean


def test_a_hostile_run_name_stays_in_the_runs_folder(tmp_path):
    work = tmp_path / "a" / "b"
    runs = work / "runs"
    cfg = load_config(CONFIGS / "threshold.yaml", ["training.epochs=2"])
    for name in HOSTILE_NAMES:
        cfg["name"] = name
        result = train(cfg, runs, handle_signals=False)
        assert result.run_dir.parent == runs and result.run_dir.resolve().parent == runs.resolve()
    assert {p.parent for p in everything(tmp_path) if p.name == "summary.json"} == {
        Path("a/b/runs") / r.name for r in runs.iterdir()
    }
    assert len(list(runs.iterdir())) == len(HOSTILE_NAMES)


def test_names_from_the_command_line_and_the_config_file(tmp_path, write_config):
    runs = tmp_path / "runs"
    config = write_config(THRESHOLD.replace("description:", "name: ../../escaped\ndescription:"))
    out = invoke_nnlab("train", config, "--runs-dir", runs, "-q")
    assert out.returncode == 0, out.stderr
    out = invoke_nnlab("train", config, "--runs-dir", runs, "--name", "../../../x/y", "-q")
    assert out.returncode == 0, out.stderr
    made = sorted(p.name for p in runs.iterdir())
    assert [m.rsplit("-", 2)[0] for m in made] == ["escaped", "x-y"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exp.yaml", "runs"]


def test_a_runs_dir_trick_stays_where_it_points(tmp_path):
    # sub/../runs is runs: the run folder is made there, directly, whatever the name
    (tmp_path / "sub").mkdir()
    out = invoke_nnlab(
        "train",
        CONFIGS / "xor.yaml",
        "--runs-dir",
        "sub/../runs",
        "--name",
        "../../up",
        "--set",
        "training.epochs=2",
        "-q",
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    (run,) = (tmp_path / "runs").iterdir()
    assert run.name.startswith("up-") and list((tmp_path / "sub").iterdir()) == []
    # a runs folder that cannot be made (a file on the way): one line, exit 2
    (tmp_path / "file").write_text("")
    out = invoke_nnlab("train", CONFIGS / "xor.yaml", "--runs-dir", "file/runs", cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr == "error: file/runs: cannot create the runs folder: not a directory\n"


def test_a_hostile_sweep_name_stays_in_the_sweeps_folder(tmp_path, write_config):
    runs = tmp_path / "runs"
    base = write_config(THRESHOLD, "thr.yaml")
    spec = write_config("name: ../../../escaped\nbase: thr.yaml\nseeds: 1\n", "s.yaml")
    out = invoke_nnlab("sweep", spec, "--runs-dir", runs, "-q")
    assert out.returncode == 0, out.stderr
    out = invoke_nnlab("sweep", base, "--runs-dir", runs, "--name", "/tmp/../x", "-q")
    assert out.returncode == 0, out.stderr
    assert sorted(p.name for p in (runs / "sweeps").iterdir()) == ["escaped", "tmp-.-x"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs", "s.yaml", "thr.yaml"]


def test_an_edited_index_cannot_delete_or_write_outside_the_sweep(tmp_path, write_config):
    runs = tmp_path / "runs"
    base = write_config(THRESHOLD, "thr.yaml")
    out = invoke_nnlab("sweep", base, "--runs-dir", runs, "-g", "optimizer.lr=0.01,0.02", "-q")
    assert out.returncode == 0, out.stderr
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("keep me")
    index_path = runs / "sweeps" / "thr" / "index.json"
    index = json.loads(index_path.read_text())
    # a regression here removes folders of this test only: the victim, or the trials folder
    for e, run in zip(index["trials"], ["../../../victim", str(victim)], strict=True):
        e["run"], e["status"] = run, "failed"  # failed: the sweep reruns them
    index_path.write_text(json.dumps(index))
    for d in (runs / "sweeps" / "thr" / "trials").iterdir():  # and their folders are gone
        for f in d.iterdir():
            f.unlink()
        d.rmdir()
    out = invoke_nnlab("sweep", base, "--runs-dir", runs, "-g", "optimizer.lr=0.01,0.02")
    assert out.returncode == 0, out.stderr
    assert "2 entries name a folder outside trials/" in out.stderr
    assert (victim / "precious.txt").read_text() == "keep me"
    entries = json.loads(index_path.read_text())["trials"]
    assert [e["run"].split("/")[0] for e in entries] == ["trials", "trials"]
    index = json.loads(index_path.read_text())
    first = index_path.parent / index["trials"][0]["run"]
    for f in first.iterdir():
        f.unlink()
    first.rmdir()  # so that trial 1 runs again, with "trials/." as its folder
    index["trials"][0].update(run="trials/.", status="failed")
    index_path.write_text(json.dumps(index))
    out = invoke_nnlab("sweep", base, "--runs-dir", runs, "-g", "optimizer.lr=0.01,0.02")
    assert out.returncode == 0 and "1 entries name a folder outside trials/" in out.stderr
    entries = json.loads(index_path.read_text())["trials"]
    assert [e["status"] for e in entries] == ["completed", "completed"]
    assert all((index_path.parent / e["run"] / "model.npz").exists() for e in entries)
    assert all(e["status"] == "completed" for e in entries)
