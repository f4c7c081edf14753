"""Regenerate docs/questions.md: the question gallery, every experiment run with nnlab commands.

    make gallery          # or: .venv/bin/python docs/gallery.py

Each section runs the commands it shows (real processes, ``python -m nnlab``) into
runs/gallery/ (emptied first, so nothing is reused), puts their output in the page, and checks
the claims its text makes. A claim that no longer holds is listed at the end and the script
exits 1 (the page is still written, with the numbers as they are now). The MNIST section reads
the MNIST files from $NNLAB_DATA_DIR (or downloads them); it takes several minutes.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNS = "runs/gallery"  # relative to ROOT: commands are shown as they are run
DOCS = ROOT / "docs"
PAGE = DOCS / "questions.md"
INITS = {
    "he_normal": "he_normal",
    "glorot_uniform": "glorot_uniform",
    "random_normal(stddev=1)": "{name: random_normal, stddev: 1.0}",
    "zeros": "zeros",
}


@dataclass
class Output:
    command: str
    stdout: str
    seconds: float

    @property
    def run_dir(self) -> Path:
        """The run folder a ``train`` printed on its last line."""
        return ROOT / self.stdout.strip().splitlines()[-1]


@dataclass
class Gallery:
    parts: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def nnlab(self, *args: str, ok: tuple[int, ...] = (0,)) -> Output:
        """Run ``nnlab ARGS`` in the repository and return its output (stop on an exit
        status not in ``ok``)."""
        command = shlex.join(["nnlab", *args])
        print(f"$ {command}", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "nnlab", *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        seconds = time.perf_counter() - t0
        if proc.returncode not in ok:
            sys.exit(f"gallery: `{command}` exited {proc.returncode}:\n{proc.stderr}")
        return Output(command, proc.stdout.rstrip("\n"), seconds)

    def shell(self, script: str) -> Output:
        """Run a bash script in the repository, with this Python's ``nnlab`` first on the
        PATH; returns its output."""
        print(f"$ {script}", file=sys.stderr, flush=True)
        path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
        t0 = time.perf_counter()
        proc = subprocess.run(
            ["bash", "-c", script],
            cwd=ROOT,
            capture_output=True,
            text=True,
            env={**os.environ, "PATH": path, "PYTHONPATH": str(ROOT)},
        )
        if proc.returncode != 0:
            sys.exit(f"gallery: the script exited {proc.returncode}:\n{script}\n{proc.stderr}")
        return Output(script, proc.stdout.rstrip("\n"), time.perf_counter() - t0)

    def expect(self, holds: bool, claim: str) -> None:
        if not holds:
            self.failures.append(claim)
            print(f"CLAIM NO LONGER HOLDS: {claim}", file=sys.stderr)

    def add(self, *lines: str) -> None:
        self.parts.extend(lines)

    def commands(self, *outputs: Output | str) -> None:
        text = [o if isinstance(o, str) else o.command for o in outputs]
        self.add("```sh", *text, "```", "")

    def block(self, text: str) -> None:
        self.add("```text", text, "```", "")


def table_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def markdown_table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(map(str, r)) + " |" for r in rows]
    return "\n".join(lines)


def layer_rows(run_dir: Path, epoch: int = 0) -> list[dict[str, str]]:
    rows = list(csv.DictReader((run_dir / "layers.csv").open()))
    return [r for r in rows if int(r["epoch"]) == epoch]


def weights(run_dir: Path) -> tuple[float, float]:
    """(w, b) of a one-weight model, from the run's model.npz."""
    import numpy as np

    with np.load(run_dir / "model.npz") as z:
        return float(z["param/layers.0.W"].item()), float(z["param/layers.0.b"].item())


def summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


# ---------------------------------------------------------------- the questions


def initialization(g: Gallery) -> None:
    g.add(
        "## 1. Does the weight initialization matter?",
        "",
        "> *I have tried different initializations for weights, but all of them give the same "
        "results. How important is it to do a proper initialization?*",
        "",
        "`configs/questions/init_deep.yaml`: six hidden ReLU layers of 64 units on the 8x8 digits "
        "(SGD with momentum, 30 epochs), with `training.log_layers: true`, so every run writes "
        "`layers.csv`: per layer and epoch (0 = at initialization) the spread of the "
        "activations, saturated and dead units, the spread across units. The same network with "
        "each initializer in every layer, then with tanh units:",
        "",
    )
    script = f"""for act in relu tanh; do
  for init in he_normal glorot_uniform '{{name: random_normal, stddev: 1.0}}' zeros; do
    sets=()
    for i in 0 1 2 3 4 5 6; do sets+=(--set "model.layers.$i.initializer=$init"); done
    if [ $act = tanh ]; then
      for i in 0 1 2 3 4 5; do sets+=(--set "model.layers.$i.activation=tanh"); done
    fi
    nnlab train configs/questions/init_deep.yaml --runs-dir {RUNS} -q "${{sets[@]}}"
  done
done"""
    out = g.shell(script)
    g.commands(script)
    folders = [line for line in out.stdout.splitlines() if line.startswith(RUNS + "/")]
    keys = [(act, label) for act in ("relu", "tanh") for label in INITS]
    runs = {
        k: Output("", folder, 0.0) for k, folder in zip(keys, folders, strict=True)
    }  # each train prints its run folder last (diverged runs too: exit status 3)
    std = {k: [float(r["a_std"]) for r in layer_rows(o.run_dir)] for k, o in runs.items()}
    sat = {k: [r["saturated"] for r in layer_rows(o.run_dir)] for k, o in runs.items()}
    g.add(
        "Standard deviation of each layer's activations at initialization (`a_std` of epoch 0 in "
        "`layers.csv`, ReLU network; layer 6 is the softmax output):",
        "",
        markdown_table(
            ["layer", *INITS],
            [[str(i)] + [f"{std['relu', k][i]:.4g}" for k in INITS] for i in range(7)],
        ),
        "",
        "Fraction of saturated units at initialization (`saturated`: tanh slope below 5% of its "
        "maximum), the same network with tanh units:",
        "",
        markdown_table(
            ["layer", *INITS],
            [[str(i)] + [f"{float(sat['tanh', k][i]):.2f}" for k in INITS] for i in range(6)],
        ),
        "",
    )
    cmp = g.nnlab(
        "compare", *folders, "-c", "layers.1.initializer,layers.1.activation,val_accuracy,"
        "test_accuracy,status", "--format", "markdown",
    )  # fmt: skip
    g.commands(
        f"nnlab compare {RUNS}/init_deep-* -c layers.1.initializer,layers.1.activation,"
        "val_accuracy,test_accuracy,status --format markdown"
    )
    g.add(
        "One run per row, `training.seed` 0; the accuracies are those of the last of the 30 "
        "epochs, on the validation split (180 digits) and the test split (359). One seed gives "
        "no interval: the seed-to-seed spread of a digits net is in the init x lr table "
        "below, with 95% intervals.",
        "",
        cmp.stdout,
        "",
    )
    glo = std["relu", "glorot_uniform"]
    g.expect(glo[5] < glo[0] / 4, "glorot_uniform: the spread dies with ReLU")
    he, big, zero = (
        std["relu", "he_normal"],
        std["relu", "random_normal(stddev=1)"],
        std["relu", "zeros"],
    )
    g.expect(max(he[:6]) / min(he[:6]) < 3, "he_normal keeps the activations' spread")
    g.expect(all(b > 2 * a for a, b in itertools.pairwise(big[:6])), "stddev 1 blows up")
    g.expect(max(zero) == 0.0, "zeros: every unit outputs 0")
    tanh_big = [float(x) for x in sat["tanh", "random_normal(stddev=1)"][1:6]]
    tanh_glorot = [float(x) for x in sat["tanh", "glorot_uniform"][:6]]
    g.expect(min(tanh_big) > 0.6 and max(tanh_glorot) < 0.1, "stddev 1 saturates tanh")
    zeros_acc = summary(runs["relu", "zeros"].run_dir)["test"]["accuracy"]
    he_acc = summary(runs["relu", "he_normal"].run_dir)["test"]["accuracy"]
    g.expect(zeros_acc < 0.2 < he_acc - 0.5, "zeros do not learn, he_normal does")
    big_status = summary(runs["relu", "random_normal(stddev=1)"].run_dir)["status"]
    g.add(
        f"**What it shows.** With he_normal (variance 2/fan_in, made for ReLU) the activations "
        f"keep their spread through the six layers ({min(he[:6]):.2f} to {max(he[:6]):.2f}); "
        f"glorot_uniform (variance 2/(fan_in + fan_out), made for tanh) loses a third of it "
        f"per ReLU layer ({glo[0]:.2f} to {glo[5]:.3f}); "
        f"N(0, 1) multiplies it by about {big[5] / big[4]:.0f} per layer (to {big[5]:.3g} at "
        f"layer 5; this run {big_status}) and saturates {min(tanh_big):.0%} or more of the tanh "
        "units from the second layer on, while zeros make every unit of a layer compute the "
        "same thing (here 0) "
        f"forever: test accuracy {zeros_acc:.2f} against {he_acc:.2f}. On a shallow network "
        "most random initializers end alike (the init x lr sweep below), which is why "
        "the user saw no difference; in a deep one they decide whether it trains at all.",
        "",
    )


def init_lr(g: Gallery) -> None:
    sweep = f"{RUNS}/sweeps/init_lr"
    g.add(
        "### On a shallow network, over seeds: the initializer or the learning rate?",
        "",
        "`configs/sweeps/init_lr.yaml`: the digits network of `configs/digits.yaml` (64-256-10, "
        "ReLU, Adam, 60 epochs) with five initializers of its hidden layer times three learning "
        "rates, three seeds each: 45 runs. A seed also draws the data splits, so two configs run "
        "with the same seed share them, and the verdicts compare them seed by seed (the paired "
        "t-test). Every config is reported; the test split (359 digits) is the larger one.",
        "",
    )
    run = g.nnlab("sweep", "configs/sweeps/init_lr.yaml", "--runs-dir", RUNS, "-q")
    against = ["--group-seeds", "--against", "best", "--objective", "test_accuracy"]
    columns = ["-c", "initializer,lr,test_accuracy", "--sort", "test_accuracy"]
    table = g.nnlab("compare", sweep, *against, *columns, "--format", "markdown")
    rows = json.loads(g.nnlab("compare", sweep, *against, *columns, "--format", "json").stdout)
    imp_args = ["--metric", "test_accuracy", "--format", "markdown"]
    imp = g.nnlab("importance", sweep, *imp_args)
    imp_rest = g.nnlab("importance", sweep, *imp_args, "--where", "initializer!=zeros")
    g.commands(run, table)
    g.add(table.stdout, "")
    g.add("Which axis explains the differences between the configs, with and without zeros:", "")
    g.commands(imp)
    g.add(imp.stdout, "")
    g.commands(imp_rest)
    g.add(imp_rest.stdout, "")
    found = g.nnlab("lr-find", "configs/digits.yaml")
    g.add("And the learning rate, from one short run instead of a sweep:", "")
    g.commands(found)
    g.block(found.stdout)
    _init_lr_claims(g, sweep, rows)


def _init_lr_claims(g: Gallery, sweep: str, rows: list[dict]) -> None:
    """The init x lr answer's text, its numbers from the runs, its claims checked."""
    from nnlab.compare.axes import percent as pct

    m = "test_accuracy"
    init = "model.layers.0.initializer"
    zeros = [r for r in rows if r[init] == "zeros"]
    best = next(r for r in rows if r[f"{m}.verdict"] == "reference")
    randoms = [r for r in rows if r[init] != "zeros"]
    slow = [r for r in randoms if r["optimizer.lr"] <= 0.01]
    fast = [r for r in randoms if r["optimizer.lr"] == 0.1]
    worse_fast = [r for r in fast if r[f"{m}.verdict"] == "worse"]
    runner = max((r for r in rows if r is not best), key=lambda r: r[f"{m}.mean"])
    needed = runner[f"{m}.seeds_needed"]
    trials = sorted((ROOT / sweep / "trials").iterdir())
    zero_start = re.compile(r"^ +initializer: zeros$", re.M)  # not bias_initializer
    on_zeros = [summary(t) for t in trials if zero_start.search((t / "config.yaml").read_text())]
    on_zeros = [s for s in on_zeros if s["test"]["accuracy"] == s["baselines"]["majority"]["test"]]
    g.expect(len(on_zeros) == 9, "zeros: the majority class on every seed and rate")
    g.expect(
        all(r[f"{m}.verdict"] == "worse" and r[f"{m}.p"] < 0.001 for r in zeros), "zeros worse"
    )
    g.expect(
        all(r[f"{m}.verdict"] in ("within noise", "reference") for r in slow),
        "lr <= 0.01: every random initializer within noise of the best",
    )
    g.expect(
        max(r[f"{m}.mean"] for r in fast) < min(r[f"{m}.mean"] for r in slow),
        "lr 0.1: every random initializer below every one at lower rates",
    )
    g.expect(0 < len(worse_fast) < len(fast), "lr 0.1: some worse, some within noise")
    g.expect(isinstance(needed, int) and needed > 10, "the two best need many seeds")
    shares = json.loads(g.nnlab("importance", sweep, "--metric", m, "--format", "json").stdout)
    rest = json.loads(
        g.nnlab(
            "importance", sweep, "--metric", m, "--where", "initializer!=zeros", "--format", "json"
        ).stdout
    )
    terms = {t["term"]: t for t in shares["terms"]}
    terms_rest = {t["term"]: t for t in rest["terms"]}
    lr, ini = terms_rest["lr"], terms_rest["initializer"]
    suggested = json.loads(g.nnlab("lr-find", "configs/digits.yaml", "--format", "json").stdout)[
        "suggested"
    ]
    g.expect(0.001 < suggested < 0.01, "lr-find: between the two best rates")
    g.expect(terms["initializer"]["share"] > 0.99, "with zeros, the initializer is all")
    g.expect(rest["terms"][0]["term"] == "lr", "without zeros, lr first")
    g.expect(ini["low"] == 0.0 and ini["share"] < rest["seed_share"], "initializer < seeds")
    gaps = [best[f"{m}.mean"] - r[f"{m}.mean"] for r in fast]
    g.add(
        f"**What it shows.** Zeros never learns: every hidden unit computes the same thing and "
        "ReLU passes no gradient at 0, so only the output biases move and the net predicts the "
        "most frequent class (on every seed its test accuracy is exactly the majority "
        f"baseline), {abs(zeros[0][f'{m}.diff']):.2f} below the best with p < 0.001. Any "
        "random start breaks the symmetry, and then, with Adam, the user's observation holds: "
        f"at lr 0.01 and 0.001 every random initializer ends within the seed noise of the best "
        f"({best[init]} at lr {best['optimizer.lr']:g}, {best[f'{m}.mean']:.4f}); the "
        f"differences are {min(-r[f'{m}.diff'] for r in slow if r is not best) * 100:.2f} to "
        f"{max(-r[f'{m}.diff'] for r in slow) * 100:.2f} points, and telling the two best "
        f"apart would take about {needed} seeds per config where 3 ran. At lr 0.1 every random "
        f"initializer loses {100 * min(gaps):.1f} to {100 * max(gaps):.1f} points, but only "
        f"{' and '.join(r[init] for r in worse_fast)} by more than the seed noise: the others' "
        "differences to the best vary more from seed to seed. The importance puts it in shares "
        "of the variance between "
        f"the configs: with zeros, the initializer explains {pct(terms['initializer']['share'])} "
        "(zeros against the rest is all there is); without it, the learning rate explains "
        f"{pct(lr['share'])} ({pct(lr['low'])} to {pct(lr['high'])} over seeds) and the "
        f"initializer {pct(ini['share'])}, an interval that reaches 0 and less than what the "
        f"seeds alone do ({pct(rest['seed_share'])} of the runs' variance lies between the "
        "seeds of a config). On this shallow network, pick any initializer that breaks the "
        "symmetry and tune the learning rate: the range test suggests "
        f"{suggested:.2g} from 200 batches, between the two best rates of the sweep. In a deep "
        "network the initializer decides whether it trains at all (above).",
        "",
    )


def threshold(g: Gallery) -> None:
    g.add(
        "## 2. Why does the net classify worse than a hand-written threshold?",
        "",
        "> *A perceptron trained with MSE on x = [0, 0, 2, 2, 9], y = [0, 0, 1, 1, 0] gets "
        "60%, while `x > 1` gets 80%. How can we train a network so that it maximizes "
        "classification accuracy?* (An answer added a sigmoid and got 80%.)",
        "",
        "Three outputs on the same five points, SGD lr 0.01, 10000 full-batch steps, each "
        "result printed with nnlab's baselines (the majority class, the best single-feature "
        "threshold):",
        "",
    )
    outs = [
        g.nnlab("train", "configs/threshold.yaml", "--runs-dir", RUNS),
        g.nnlab("train", "configs/questions/threshold_sigmoid_mse.yaml", "--runs-dir", RUNS),
        g.nnlab("train", "configs/questions/threshold_bce.yaml", "--runs-dir", RUNS),
    ]
    for o in outs:
        g.commands(o)
        g.block("\n".join(o.stdout.splitlines()[:-1]))
    accs = [summary(o.run_dir)["train"]["accuracy"] for o in outs]
    g.expect(accs == [0.6, 0.8, 0.6], "linear 60%, sigmoid+MSE 80%, BCE 60%")
    sig = summary(outs[1].run_dir)
    g.expect(abs(sig["train"]["loss"] - 0.2062) < 1e-3, "the answer's final cost 0.2062")
    w, b = weights(outs[1].run_dir)
    g.expect(abs(w - 2.4254) < 1e-3 and abs(b + 2.1028) < 1e-3, "the answer's final w, b")
    w_bce, _ = weights(outs[2].run_dir)
    g.expect(-0.2 < w_bce < 0, "BCE keeps w slightly negative")
    g.add(
        "The sigmoid + MSE run starts where the answer's TensorFlow run started (w = 0.7565, "
        f"b = -0.9745) and ends where it ended: cost {sig['train']['loss']:.4f} (TensorFlow: "
        f"0.2062), w = {w:.4f}, b = {b:.4f} (TensorFlow: 2.4254, -2.1028; from the runs' "
        f"`model.npz`), 4/5. The cross-entropy run ends at w = {w_bce:.3f}.",
        "",
        "**Which starting points end where?** The same training from a grid of starting "
        "weights w and biases b (constant initializers), for each loss:",
        "",
    )
    sweeps = {
        "sigmoid + MSE": ("threshold_starts", []),
        "linear + MSE": ("threshold_starts_linear", ["--set", "model.layers.0.activation=linear"]),
        "sigmoid + BCE": ("threshold_starts_bce", ["--set", "loss=binary_crossentropy"]),
    }
    shown = []
    grids = {}
    for label, (name, extra) in sweeps.items():
        o = g.nnlab(
            "sweep", "configs/sweeps/threshold_starts.yaml", "--name", name, "--runs-dir", RUNS,
            "-q", *extra,
        )  # fmt: skip
        shown.append(o)
        c = g.nnlab(
            "compare", f"{RUNS}/sweeps/{name}", "--format", "csv", "-c",
            "model.layers.0.initializer.value,model.layers.0.bias_initializer.value,accuracy,"
            "loss",
        )  # fmt: skip
        grids[label] = table_rows(c.stdout)
    g.commands(
        *shown,
        f"nnlab compare {RUNS}/sweeps/threshold_starts --format csv -c "
        "initializer.value,bias_initializer.value,accuracy,loss",
    )
    ws = sorted({float(r["model.layers.0.initializer.value"]) for r in grids["sigmoid + MSE"]})
    bs = sorted({float(r["model.layers.0.bias_initializer.value"]) for r in grids["sigmoid + MSE"]})
    g.add(
        "Final accuracy (and loss) by starting w (rows) and b (columns), from the `nnlab compare "
        "--format csv` of each sweep:",
        "",
    )
    for label, rows in grids.items():
        cell = {
            (float(r["model.layers.0.initializer.value"]),
             float(r["model.layers.0.bias_initializer.value"])): r
            for r in rows
        }  # fmt: skip
        body = [
            [f"w = {w:g}"]
            + [f"{float(cell[w, b]['accuracy']):.0%} ({float(cell[w, b]['loss']):.3f})" for b in bs]
            for w in ws
        ]
        g.add(f"*{label}*", "", markdown_table(["start", *[f"b = {b:g}" for b in bs]], body), "")
    mse = {(float(r["model.layers.0.initializer.value"]), float(r["accuracy"]))
           for r in grids["sigmoid + MSE"]}  # fmt: skip
    ends_80 = sorted({w for w, a in mse if a == 0.8})
    ends_60 = sorted({w for w, a in mse if a == 0.6})
    g.expect(max(ends_60) < min(ends_80), "sigmoid+MSE: the starting w decides")
    for label in ("linear + MSE", "sigmoid + BCE"):
        g.expect({r["accuracy"] for r in grids[label]} == {"0.6"}, f"{label}: 60% everywhere")
    no_outlier = "--set=data={name: csv, path: configs/questions/threshold_no_outlier.csv}"
    outs = [
        g.nnlab("train", c, "--runs-dir", RUNS, "-q", no_outlier)
        for c in (
            "configs/threshold.yaml",
            "configs/questions/threshold_sigmoid_mse.yaml",
            "configs/questions/threshold_bce.yaml",
        )
    ]
    g.add("**Without the outlier** (the four other points, `threshold_no_outlier.csv`):", "")
    g.commands(*outs)
    cmp = g.nnlab(
        "compare", *[str(o.run_dir.relative_to(ROOT)) for o in outs], "-c",
        "activation,accuracy", "--format", "markdown",
    )  # fmt: skip
    g.add(cmp.stdout, "")
    g.expect(all(summary(o.run_dir)["train"]["accuracy"] == 1.0 for o in outs), "no outlier: 100%")
    g.add(
        "**What it shows.** Each loss ends at 4/4 without the point at x = 9, so the outlier "
        "alone costs the accuracy. On a linear output its squared error grows as (9w)^2 and "
        "drags the least-squares line down (3/5 from every start: the loss is convex); "
        "binary cross-entropy (logistic regression, also convex) charges it about 9w nats, "
        "which keeps w slightly negative and predicts 0 everywhere (3/5, the majority); a "
        "sigmoid with MSE caps its error at 1, so the net can give the outlier up and take "
        f"the threshold (4/5), but only from starts with w >= {min(ends_80):g}: from w <= "
        f"{max(ends_60):g} it settles at 3/5. Accuracy is not what any of them minimises.",
        "",
    )
    threshold_tuning(g, sum(r["accuracy"] == "0.6" for r in grids["sigmoid + MSE"]))


def threshold_tuning(g: Gallery, mse_stuck: int) -> None:
    """Question 2, continued: the decision threshold tuned after training."""
    g.add(
        "**Tuning the decision threshold.** The threshold that turns an output into a class is "
        "a decision outside the optimisation (an answer's point). With `training.threshold: "
        "tune` nnlab chooses, after training, the threshold on the output that maximises the "
        "accuracy (on the validation split; these five points have none, so on the training "
        "split, which the summary notes), records it in the run, and `nnlab predict` and every "
        "export decide with it; the summary adds the ROC AUC, how well the outputs rank class 1 "
        "above class 0 whatever the threshold:",
        "",
    )
    outs = [
        g.nnlab("train", c, "--runs-dir", RUNS, "--set", "training.threshold=tune")
        for c in ("configs/questions/threshold_bce.yaml", "configs/threshold.yaml")
    ]
    for o in outs:
        g.commands(o)
        g.block("\n".join(o.stdout.splitlines()[:-1]))
    bce, linear = (summary(o.run_dir) for o in outs)
    for s in (bce, linear):
        g.expect(s["train"]["threshold_accuracy"] == 0.6, "tuning keeps 3/5")
        g.expect(abs(s["train"]["roc_auc"] - 1 / 3) < 1e-9, "AUC 1/3: the ranking is wrong")
        g.expect(s["threshold"]["split"] == "train" and "note" in s["threshold"], "tuned on train")
    w_bce, _ = weights(outs[0].run_dir)
    bce["w"] = w_bce
    g.add(
        f"**What it shows.** Tuned, the threshold still gives 3/5 (cross-entropy: threshold "
        f"{bce['threshold']['value']:g}, the default kept; least squares: "
        f"{linear['threshold']['value']:g}): a threshold only moves the cut along the output, "
        f"and both outputs rank the points wrongly. With w = {w_bce:.3f} < 0 the output is "
        "highest at x = 0, then x = 2, then x = 9: the two class-1 points sit between class-0 "
        f"points (ROC AUC {bce['train']['roc_auc']:.2f}, worse than chance), so a cut labels "
        "x = 0 with them (3/5 at best, as labelling every point 0). 4/5 needs other weights, "
        "not another threshold: the sigmoid + MSE run ranks them right (w > 0) and gets 4/5 at "
        "the default 0.5. Tuning helps where the ranking is right and the default cut is not, "
        "as on imbalanced classes (tests/test_threshold.py). Training for accuracy itself is "
        "the other half of this answer (below).",
        "",
    )
    bce["mse_stuck"] = mse_stuck
    threshold_es(g, bce)


ES = "{name: es, population: 100, sigma: 3, lr: 0.1}"


def threshold_es(g: Gallery, bce_tuned: dict) -> None:
    """Question 2, continued: accuracy itself trained by evolution strategies."""
    g.add(
        "**Training for accuracy itself: evolution strategies.** The 0-1 loss (1 - accuracy) "
        "is flat between decisions: it has no gradient, and a gradient optimizer refuses it:",
        "",
    )
    refused = g.shell(
        "nnlab train configs/questions/threshold_es.yaml --set optimizer=sgd 2>&1; "
        'echo "exit status $?"'
    )
    g.commands(refused)
    g.block(refused.stdout)
    g.expect(refused.stdout.endswith("exit status 2"), "sgd refuses zero_one, exit 2")
    g.add(
        "Evolution strategies need no gradient. `configs/questions/threshold_es.yaml` trains the "
        "sigmoid output, from the answer's start, on `loss: zero_one` with OpenAI-ES: each step "
        "evaluates 50 mirrored pairs of perturbations of (w, b) (sigma 3) in one pass, ranks "
        "their 0-1 losses and moves along the estimated gradient of the Gaussian-smoothed loss "
        "with Adam (lr 0.1), 300 steps:",
        "",
    )
    es = g.nnlab("train", "configs/questions/threshold_es.yaml", "--runs-dir", RUNS)
    g.commands(es)
    g.block("\n".join(es.stdout.splitlines()[:-1]))
    w, b = weights(es.run_dir)
    es_sum = summary(es.run_dir)
    g.expect(es_sum["train"]["accuracy"] == 0.8, "es on zero_one: 4/5")
    g.expect(b <= 0 < 2 * w + b, "es: the cut w x + b = 0 lies between x = 0 and x = 2")
    wide, sigma1, shown = es_starts(g)
    g.add("From every starting point of the grid above, and the same with sigma 1:", "")
    g.commands(*shown)
    ws, bs = sorted({k[0] for k in wide}), sorted({k[1] for k in wide})
    body = [
        [f"w = {w_:g}"]
        + [f"{wide[k][0]:.0%} ({sigma1[k][0]:.0%})" for k in ((w_, b_) for b_ in bs)]
        for w_ in ws
    ]
    g.add("*sigmoid + 0-1 loss, evolution strategies, sigma 3 (sigma 1)*", "")
    g.add(markdown_table(["start", *[f"b = {b_:g}" for b_ in bs]], body), "")
    g.expect(len(wide) == 24 and {a for a, _ in wide.values()} == {0.8}, "es: 4/5 everywhere")
    stuck = sum(a < 0.8 for a, _ in sigma1.values())
    g.expect(stuck >= 3 and {a for a, _ in sigma1.values()} <= {0.6, 0.8}, "sigma 1: 3/5")
    from_b2 = [sigma1[w_, 2.0] for w_ in ws if w_ < 2]
    g.expect(
        all(a == 0.6 and weights(run)[0] < 0 < weights(run)[1] for a, run in from_b2),
        "sigma 1, b = 2: the plateau w < 0 < b",
    )
    threshold_perceptron(g, es_sum, bce_tuned, (w, b), stuck)


def es_starts(g: Gallery) -> tuple[dict, dict, list]:
    """The threshold grid trained by es with sigma 3 and 1: for each, start (w, b) -> (final
    accuracy, run folder); and the commands."""
    shown: list = []
    sweeps = {"threshold_starts_es": [], "threshold_starts_es_sigma1": ["optimizer.sigma=1"]}
    for name, sets in sweeps.items():
        args = ["--set", "loss=zero_one", "--set", f"optimizer={ES}"]
        args += [a for s in sets for a in ("--set", s)] + ["--set", "training.epochs=300"]
        shown.append(
            g.nnlab(
                "sweep",
                "configs/sweeps/threshold_starts.yaml",
                "--name",
                name,
                "--runs-dir",
                RUNS,
                "-q",
                *args,
            )
        )
    from nnlab.runs import read_config, runs_under

    ends = []
    for name in sweeps:
        cmp = g.nnlab(
            "compare", f"{RUNS}/sweeps/{name}", "--format", "csv", "-c",
            "model.layers.0.initializer.value,model.layers.0.bias_initializer.value,accuracy",
        )  # fmt: skip
        shown.append(cmp.command)
        folders = {}  # the run folders by their start (the compare table names them shortly)
        for run in runs_under(ROOT / RUNS / "sweeps" / name):
            layer = read_config(run)["model"]["layers"][0]
            folders[layer["initializer"]["value"], layer["bias_initializer"]["value"]] = run
        cells = {}
        for r in table_rows(cmp.stdout):
            start = (float(r["model.layers.0.initializer.value"]),
                     float(r["model.layers.0.bias_initializer.value"]))  # fmt: skip
            cells[start] = (float(r["accuracy"]), folders[start])
        ends.append(cells)
    return ends[0], ends[1], shown


def threshold_perceptron(
    g: Gallery, es_sum: dict, bce_tuned: dict, wb: tuple[float, float], stuck: int
) -> None:
    """Question 2, continued: the step perceptron, and es on the cross-entropy."""
    w, b = wb
    g.add(
        "The perceptron of the question with a step (Heaviside) activation, output 1 when "
        "w x + b > 0, passes no gradient back either; evolution strategies train it (its "
        "squared error on 0/1 outputs is the fraction it gets wrong):",
        "",
    )
    step = g.nnlab("train", "configs/questions/perceptron_es.yaml", "--runs-dir", RUNS)
    g.commands(step)
    g.block("\n".join(step.stdout.splitlines()[:-1]))
    g.expect(summary(step.run_dir)["train"]["accuracy"] == 0.8, "the step perceptron: 4/5")
    g.add(
        "And evolution strategies on the cross-entropy (a small sigma, so that the smoothed "
        "loss is nearly the loss itself) end where gradient descent ended:",
        "",
    )
    es_bce = g.nnlab(
        "train", "configs/questions/threshold_bce.yaml", "--runs-dir", RUNS, "--set",
        "optimizer={name: es, population: 100, sigma: 0.1, lr: 0.01}", "--set",
        "training.epochs=3000",
    )  # fmt: skip
    g.commands(es_bce)
    g.block("\n".join(es_bce.stdout.splitlines()[:-1]))
    w_es_bce, _ = weights(es_bce.run_dir)
    w_sgd_bce = bce_tuned["w"]
    g.expect(summary(es_bce.run_dir)["train"]["accuracy"] == 0.6, "es on BCE: 3/5")
    g.expect(abs(w_es_bce - w_sgd_bce) < 0.02, "es on BCE: SGD's w")
    auc = es_sum["train"]["roc_auc"]
    g.expect(auc > 0.5 > bce_tuned["train"]["roc_auc"], "es ranks right, BCE wrong")
    g.add(
        f"**What it shows.** Trained on the 0-1 loss, evolution strategies reach 4/5 from all "
        f"24 starting points, where linear + MSE and sigmoid + BCE end at 3/5 from every one "
        f"and sigmoid + MSE from {bce_tuned['mse_stuck']} (the answer's start ends at "
        f"w = {w:.2f}, b = {b:.2f}: the cut w x + b = 0 at x = {-b / w:.2f}, between x = 0 and "
        "x = 2, as the threshold x > 1 cuts); "
        "so does the step perceptron, which no gradient could train. The point at x = 9 stays "
        "wrong: one unit's output is monotone in x, so 4/5 is the best any weights give. The "
        "optimizer was never the obstacle: evolution strategies on the cross-entropy end at "
        f"w = {w_es_bce:.3f}, beside gradient descent's {w_sgd_bce:.3f}, at 3/5. What is "
        "minimised decides. And tuning the decision threshold of the cross-entropy run "
        f"(above) reached {bce_tuned['train']['threshold_accuracy']:.0%}, its 3/5 again, "
        "because a threshold only cuts along the output: with w < 0 the output ranks the "
        f"points wrongly (ROC AUC {bce_tuned['train']['roc_auc']:.2f}), and no cut of a wrong "
        "ranking does better than labelling every point 0. The 0-1 loss run puts the class-1 "
        f"points above x = 0 (ROC AUC {auc:.2f}; x = 9, which no increasing output can put "
        "below x = 2, stays its one error). Gradient-free "
        "training pays in evaluations: 300 steps of 100 networks, 30,000 forward passes, "
        "where gradient descent took 10,000 forward and backward passes of one; and sigma "
        "matters: the perturbations must reach across the loss's plateaus. With sigma 1, "
        f"{stuck} of the 24 starts settle at 3/5: from b = 2 (and w < 2) each run "
        "finds the plateau that labels x = 0 and x = 2 as 1 (w < 0 < b), and every way from "
        "there to the 4/5 wedge (b <= 0 < 2w + b) crosses worse plateaus that a narrow "
        "search never sees past.",
        "",
    )


def learnable(g: Gallery) -> None:
    g.add(
        "## 3. Can this data be learned at all?",
        "",
        "> *How to evaluate if it is possible at all to train a neural network on the provided "
        "data? ... Opposed to some random noise.* The answer: the network should be able to "
        "overfit the training set without any regularisation; check on growing subsets.",
        "",
    )
    o = g.nnlab("probe", "configs/questions/learnable.yaml", "-q")
    g.commands(o)
    g.block(o.stdout)
    first = o.stdout.splitlines()[3:]
    rows = [line.split() for line in first if line[:1].isdigit()]
    g.expect(all(r[-1] == "yes" for r in rows), "real labels fitted at every size")
    last = rows[-1]
    g.expect(float(last[4]) < float(last[2]) - 0.3, "shuffled labels only memorised")
    memorised = [r[0] for r in rows if float(r[4]) >= 0.99]
    g.expect(bool(memorised), "shuffled labels: a small set is memorised")
    memorised_text = f"up to {memorised[-1]} samples" if memorised else "no set"
    g.add(
        "**What it shows.** The one-hidden-layer net fits the real labels at every size "
        f"(train accuracy {last[2]}) and its validation accuracy grows with the data to "
        f"{last[3]}; with shuffled labels it memorises {memorised_text}, but on all "
        f"{last[0]} reaches a train accuracy of only {last[4]} and predicts the validation set "
        f"at chance ({last[5]}). The `majority` "
        "column answers the other question of that thread: are the classes balanced?",
        "",
    )


def dropout(g: Gallery) -> None:
    g.add(
        "## 4. Why does dropout scale the kept units by 1/keep_prob?",
        "",
        "> *Why is the input scaled in tf.nn.dropout? Why not keep the input element as it is "
        "with probability keep_prob?*",
        "",
        "`configs/questions/dropout.yaml`: 64-256-128-10 ReLU on the digits with dropout 0.5 "
        "after each hidden layer, trained with inverted dropout (`scale: true`, the default) and "
        "with plain dropout (`scale: false`); `nnlab activations` then runs the training split "
        "through each trained net in evaluation mode and in training mode (20 draws of the "
        "masks) and prints each layer's mean output:",
        "",
    )
    scaled = g.nnlab("train", "configs/questions/dropout.yaml", "--runs-dir", RUNS, "-q")
    plain = g.nnlab(
        "train", "configs/questions/dropout.yaml", "--runs-dir", RUNS, "-q", "--name",
        "dropout-plain", "--set", "model.layers.1.scale=false", "--set",
        "model.layers.3.scale=false",
    )  # fmt: skip
    ratios = {}
    for label, o in (("inverted dropout", scaled), ("plain dropout", plain)):
        a = g.nnlab("activations", str(o.run_dir.relative_to(ROOT)))
        g.add(f"*{label}*", "")
        g.commands(o, a.command)
        g.block(a.stdout)
        rows = [line.split() for line in a.stdout.splitlines() if line[:1].isdigit()]
        ratios[label] = [float(r[-1]) for r in rows]
    cmp = g.nnlab(
        "compare", str(scaled.run_dir.relative_to(ROOT)), str(plain.run_dir.relative_to(ROOT)),
        "-c", "layers.1.scale,loss,accuracy,test_loss,test_accuracy", "--format", "markdown",
    )  # fmt: skip
    g.commands(cmp)
    g.add(cmp.stdout, "")
    inv, pl = ratios["inverted dropout"], ratios["plain dropout"]
    g.expect(all(abs(r - 1) < 0.1 for r in inv), "inverted: train/eval about 1")
    g.expect(abs(pl[1] - 0.5) < 0.02 and pl[3] < 0.35, "plain: keep_prob, compounded")
    loss = [summary(o.run_dir)["test"]["loss"] for o in (scaled, plain)]
    acc = [summary(o.run_dir)["test"]["accuracy"] for o in (scaled, plain)]
    g.expect(loss[1] > 1.5 * loss[0], "plain dropout: higher test loss")
    g.add(
        "**What it shows.** With inverted dropout every layer's mean is the same in training "
        f"and evaluation (ratios {min(inv):.2f} to {max(inv):.2f}: a ReLU after dropout "
        "averages a little higher in training); without the scaling the first dropout layer "
        f"passes on {pl[1]:.2f} (keep_prob) of its evaluation-mode mean and the second "
        f"{pl[3]:.2f}, so at evaluation the output layer receives about {1 / pl[3]:.0f} times "
        "the input it was trained on. Here that inflates the logits: the test loss goes from "
        f"{loss[0]:.3f} to {loss[1]:.3f} while the accuracy barely moves ({acc[0]:.4f}, "
        f"{acc[1]:.4f}), since ReLU layers scale along and the argmax survives. Plain dropout "
        "needs the weights multiplied by keep_prob at test time (the Dropout paper); "
        "tf.nn.dropout does the division at training time instead, so evaluation needs nothing.",
        "",
    )


XOR_NETS = {  # label -> config
    "2-1-1": "configs/questions/xor_2_1_1.yaml",
    "2-2-1": "configs/xor.yaml",
    "2-1-1 + skip": "configs/questions/xor_skip.yaml",
}
XOR_SEEDS = 1000


def xor(g: Gallery) -> None:
    g.add(
        "## 5. Why will XOR not learn with one hidden unit?",
        "",
        "> *I am trying to implement XOR with 2 inputs, 1 element in the hidden layer, and 1 "
        "output. I think I am missing a connection between the inputs and the outputs.*",
        "",
        "`configs/xor.yaml` (sigmoid units, binary cross-entropy, SGD with momentum, 3000 "
        "full-batch steps) with two hidden units, `configs/questions/xor_2_1_1.yaml` with one, "
        "and `configs/questions/xor_skip.yaml` (one hidden unit plus a connection from the "
        f"inputs to the output), {XOR_SEEDS} seeds each. `--seeds` trains the seeds of a config "
        "together as one population, each exactly as `nnlab train --seed S` would, into a run "
        "folder of its own:",
        "",
    )
    outs = {k: g.nnlab("train", c, "--seeds", str(XOR_SEEDS), "--runs-dir", RUNS, "-q")
            for k, c in XOR_NETS.items()}  # fmt: skip
    folders = [str(o.run_dir.relative_to(ROOT)) for o in outs.values()]
    for o in outs.values():
        g.commands(o)
        g.block(o.stdout)
    cols = "model.layers.0.units,model.layers.1.inputs,accuracy,loss"
    c1 = g.nnlab("compare", *folders, "--group-seeds", "-c", cols, "--format", "markdown")
    g.commands(c1)
    g.add(c1.stdout, "")
    csv_rows = table_rows(
        g.nnlab(
            "compare", *folders, "--format", "csv", "-c",
            "model.layers.0.units,model.layers.1.inputs,accuracy",
        ).stdout
    )  # fmt: skip
    acc: dict[str, list[float]] = {k: [] for k in XOR_NETS}
    for r in csv_rows:
        units = r["model.layers.0.units"]
        key = "2-1-1 + skip" if r["model.layers.1.inputs"] else f"2-{units}-1"
        acc[key].append(float(r["accuracy"]))
    wins = {k: sum(a == 1.0 for a in v) for k, v in acc.items()}
    g.expect(all(len(v) == XOR_SEEDS for v in acc.values()), f"{XOR_SEEDS} runs each")
    g.expect(wins["2-1-1"] == 0 and max(acc["2-1-1"]) == 0.75, "2-1-1 never, at most 3 of 4")
    three = sum(a == 0.75 for a in acc["2-1-1"])
    g.expect(three >= 0.99 * XOR_SEEDS, "2-1-1 nearly always 3 of 4")
    g.expect(0.6 * XOR_SEEDS <= wins["2-2-1"] <= 0.9 * XOR_SEEDS, "2-2-1 mostly, not always")
    g.expect(wins["2-1-1 + skip"] >= 0.98 * XOR_SEEDS, "skip nearly always")
    seconds = sum(o.seconds for o in outs.values())
    g.add(
        f"**What it shows.** Success over {XOR_SEEDS} seeds: 2-1-1 {wins['2-1-1']} (3 of 4 "
        f"points for {three}, 2 of 4 for the rest), 2-2-1 {wins['2-2-1']} "
        f"({wins['2-2-1'] / XOR_SEEDS:.0%}: the rest stall on a plateau, as seed 14 does), one "
        f"hidden unit with the skip connection {wins['2-1-1 + skip']}. A single hidden unit is "
        "one line through the input plane, and the output a monotone function of it: no line "
        "puts (0,1) and (1,0) on one side and (0,0), (1,1) on the other. The connection the "
        "user suspected missing is the fix: the output sees x1, x2 and the hidden unit, which "
        "can detect AND, and XOR is x1 + x2 - 2 AND. The three populations of "
        f"{XOR_SEEDS} networks took {seconds:.0f} s together, run folders included (a seed "
        "trained alone: about 0.3 s).",
        "",
    )


def gradcheck(g: Gallery) -> None:
    g.add(
        "## 6. Is my backprop right?",
        "",
        "> *I am having an issue with my calculation of checking the gradient when implementing "
        "a neural network in numpy ... (MNIST, one hidden layer of 300, sigmoid, squared "
        "error)* and *my weights are being trained to zero with no gain in accuracy ... the "
        "deltas of the input layer are all zero*.",
        "",
        "`nnlab gradcheck` builds a config's model in float64 and compares, for every parameter "
        "tensor, the backpropagated gradient of the training loss with central differences on "
        "a batch of the training data (torch.autograd.gradcheck's tolerances). The user's "
        "network (`configs/questions/mnist_mse.yaml`), and a two-headed model whose "
        "classification loss masks the unlabelled samples:",
        "",
    )
    errors = []
    for config in ("configs/questions/mnist_mse.yaml", "configs/questions/semi_supervised.yaml"):
        o = g.nnlab("gradcheck", config)
        g.commands(o)
        g.block(o.stdout)
        g.expect(o.stdout.splitlines()[-1].startswith("pass: all"), f"gradcheck {config}")
        rows = [line.split() for line in o.stdout.splitlines() if line.startswith("layers.")]
        errors += [(float(r[-3]), float(r[-2])) for r in rows]
    worst_abs, worst_rel = max(e[0] for e in errors), max(e[1] for e in errors)
    g.add(
        f"**What it shows.** Every tensor agrees with the numerical gradient: absolute errors "
        f"{worst_abs:.0e} or less, relative errors {worst_rel:.0e} or less against a tolerance of "
        "1e-3, through the sigmoid "
        "output with MSE, the fused softmax cross-entropy, the masks and the loss weights. A "
        "wrong sign or a dropped term in a layer's backward makes its tensors fail with "
        "relative errors near 1 and the command exit 1 (tests/test_gradcheck.py breaks a "
        "dense layer on purpose). For a hand-written net, check a gradient the same way before "
        "debugging the training.",
        "",
    )


def mnist(g: Gallery) -> None:
    g.add(
        "## 7. MSE or cross-entropy on MNIST, and which learning rate?",
        "",
        "> *I get 7% error using 300 units in the hidden layer using minibatch gradient descent "
        "with rmsprop, 30 epochs ... Should I use a softmax output function?* An answer posted "
        "a table: 30 epochs, 300 hidden units, lr 0.001, RMSprop, L2 lambda 0.001: 6.9% test "
        "error; lambda 0.000002: 5.7%.",
        "",
        "`configs/questions/mnist_mse.yaml` is that setting (784-300-10, sigmoid units, MSE, "
        "RMSprop, batches of 100, 30 epochs); the sweep runs both lambdas at three learning "
        "rates, then the same grid with softmax and cross-entropy. nnlab's `mse` averages over "
        "the 10 outputs (a fifth of the question's 1/2 sum) and `optimizer.l2` multiplies sum "
        "w^2 (not w^2 / 2), so lambda is `l2 = lambda / 10` for MSE and `lambda / 2` for "
        "cross-entropy (see the config's comments).",
        "",
    )
    s1 = g.nnlab("sweep", "configs/sweeps/mnist_table.yaml", "--runs-dir", RUNS, "-q")
    s2 = g.nnlab(
        "sweep", "configs/sweeps/mnist_table.yaml", "--name", "mnist_table_ce", "--runs-dir",
        RUNS, "-q", "--set", "loss=categorical_crossentropy", "--set",
        "model.layers.1.activation=softmax", "-g", "optimizer.l2=0.0005,0.000001",
    )  # fmt: skip
    folders = [f"{RUNS}/sweeps/mnist_table", f"{RUNS}/sweeps/mnist_table_ce"]
    c = g.nnlab(
        "compare", *folders, "-c", "layers.1.activation,l2,lr,accuracy,test_accuracy",
        "--format", "markdown",
    )  # fmt: skip
    p = g.nnlab(
        "plot", *folders, "--where", "lr==0.001", "-m", "accuracy", "-o",
        "docs/mnist_accuracy.png",
    )  # fmt: skip
    g.commands(s1, s2, c)
    g.add(
        "One run per cell, `training.seed` 0 (each takes a minute); `accuracy` is the training "
        "accuracy of the last epoch, `test_accuracy` on the official 10,000 test images. One "
        "seed gives no interval: read differences of a few tenths of a point as noise.",
        "",
        c.stdout,
        "",
    )
    g.commands(p)
    g.add("![training accuracy per epoch at lr 0.001](mnist_accuracy.png)", "")
    rows = table_rows(
        g.nnlab(
            "compare", *folders, "--format", "csv", "-c",
            "model.layers.1.activation,l2,lr,test_accuracy",
        ).stdout
    )  # fmt: skip
    loss = {"sigmoid": "MSE", "softmax": "cross-entropy"}
    err = {(loss[r["model.layers.1.activation"]], float(r["optimizer.l2"]),
            float(r["optimizer.lr"])): 1 - float(r["test_accuracy"]) for r in rows}  # fmt: skip
    mse_hi, mse_lo = err["MSE", 0.0001, 0.001], err["MSE", 2e-7, 0.001]
    ce_hi, ce_lo = err["cross-entropy", 0.0005, 0.001], err["cross-entropy", 1e-6, 0.001]
    slow = [err[loss, small, 0.0001] for loss, small in (("MSE", 2e-7), ("cross-entropy", 1e-6))]
    fast = [err[loss, small, 0.01] for loss, small in (("MSE", 2e-7), ("cross-entropy", 1e-6))]
    g.expect(mse_lo < mse_hi and ce_lo < ce_hi, "less L2 is better for both losses")
    g.expect(ce_hi < mse_hi - 0.02, "at lambda 0.001 cross-entropy is far better")
    g.expect(abs(ce_lo - mse_lo) < 0.005, "at lambda 0.000002 the losses tie")
    g.expect(min(slow + fast) > max(mse_lo, ce_lo), "lr 0.001 is the best of the three")
    g.add(
        f"**What it shows.** At the question's lr 0.001 the sigmoid + MSE net gets "
        f"{mse_hi:.1%} test error with lambda 0.001 and {mse_lo:.1%} with 0.000002 (the table: "
        "6.9% and 5.7%, the same ranking; how the answer's RMSprop variant and cost were "
        f"scaled is not known exactly); softmax with cross-entropy gets {ce_hi:.1%} and "
        f"{ce_lo:.1%}. Lambda is the larger effect: 0.001 holds both back, MSE the most, "
        "because its gradient through the sigmoid, (out - t) out (1 - out), is at most a "
        "quarter of cross-entropy's (out - t), so the same penalty outweighs it. With little "
        f"regularisation the two losses end {abs(ce_lo - mse_lo) * 100:.1f} points apart (one "
        "seed each): RMSprop divides every step by the gradient's running size, which makes "
        "up for the sigmoid's small gradients; cross-entropy fits the training set faster "
        f"(the plot). lr 0.0001 is too slow for 30 epochs ({min(slow):.1%} or more) and 0.01 "
        f"too large ({min(fast):.1%} or more).",
        "",
    )
    mnist_rprop(g, err["MSE", 0.0001, 0.001], err["MSE", 2e-7, 0.001])


def mnist_rprop(g: Gallery, rms_hi: float, rms_lo: float) -> None:
    """Question 7, continued: the table's training method as the answer described it."""
    g.add(
        "**The table's method, as the answer described it.** \"RMSPROP with decrements=0.5 and "
        "increments=1.3\" is Rprop's step adaptation, not RMSprop: each weight's step is "
        "multiplied by 1.3 while its gradient keeps its sign and by 0.5 when it flips, and the "
        "weight moves by its step against the gradient's sign (`optimizer: {name: rprop, lr: "
        "0.001, eta_minus: 0.5, eta_plus: 1.3}`, lr the first step). The same network, both "
        "lambdas, with the question's mini-batches of 100 for 30 epochs, and full-batch as Rprop "
        "was designed (100 epochs: a step per pass over the data):",
        "",
    )
    s1 = g.nnlab("sweep", "configs/sweeps/mnist_rprop.yaml", "--runs-dir", RUNS, "-q")
    s2 = g.nnlab(
        "sweep", "configs/sweeps/mnist_rprop.yaml", "--name", "mnist_rprop_full", "--set",
        "training.batch_size=null", "--set", "training.epochs=100", "--runs-dir", RUNS, "-q",
    )  # fmt: skip
    folders = [f"{RUNS}/sweeps/mnist_rprop", f"{RUNS}/sweeps/mnist_rprop_full"]
    c = g.nnlab(
        "compare", *folders, "-c", "batch_size,l2,epochs,accuracy,test_accuracy", "--format",
        "markdown",
    )  # fmt: skip
    g.commands(s1, s2, c)
    g.add(c.stdout, "")
    rows = table_rows(
        g.nnlab(
            "compare", *folders, "--format", "csv", "-c", "training.batch_size,l2,test_accuracy"
        ).stdout
    )  # fmt: skip
    err = {
        ("full" if not r["training.batch_size"] else str(int(float(r["training.batch_size"]))),
         float(r["optimizer.l2"])): 1 - float(r["test_accuracy"])
        for r in rows
    }  # fmt: skip
    mini_hi, mini_lo = err["100", 0.0001], err["100", 2e-7]
    full_hi, full_lo = err["full", 0.0001], err["full", 2e-7]
    curve = [
        float(r["accuracy"])
        for r in csv.DictReader(
            next((ROOT / folders[0] / "trials").glob("002-*/metrics.csv")).open()
        )
    ]  # the mini-batch run with the smaller lambda, per epoch
    g.expect(min(mini_hi, mini_lo) > 0.07, "mini-batch Rprop: worse than the table")
    g.expect(full_lo < 0.03 and full_lo < mini_lo - 0.04, "full-batch Rprop learns")
    g.expect(max(curve[4:]) - curve[4] < 0.02, "mini-batch Rprop stalls after a few epochs")
    g.expect(full_lo < full_hi and mini_lo < mini_hi, "less L2 is better with Rprop too")
    g.add(
        f"**What it shows.** Rprop on the question's mini-batches ends at {mini_hi:.1%} and "
        f"{mini_lo:.1%} test error (the table: 6.9% and 5.7%; RMSprop above: {rms_hi:.1%} and "
        f"{rms_lo:.1%}), and it stops learning after a few epochs: the training accuracy of "
        f"the smaller lambda is {curve[4]:.1%} after epoch 5 and {curve[-1]:.1%} after epoch "
        "30. Rprop compares the sign of each weight's gradient with the last one, and on "
        "mini-batches the sign flips with the batch, not the slope: the steps halve more often "
        "than they grow and shrink towards step_min (1e-6), and the weights stop. On the full "
        "batch, "
        f"as designed, it gets {full_hi:.1%} and {full_lo:.1%} in 100 steps. Neither is the "
        "table (which was probably another variant, and whose cost and lambda scaling are not "
        "known); what holds across Rprop and RMSprop is its ranking: lambda 0.001 costs a "
        "sigmoid + MSE net several points, lambda 0.000002 almost nothing.",
        "",
    )


def saliency(g: Gallery) -> None:
    g.add(
        "## 8. Which inputs does the network look at?",
        "",
        "> *Can we activate the outputs of a NN to gain insight into how the neurons are "
        "connected to input features?* The answer: compute the gradient of the neuron's output "
        "with respect to each input feature.",
        "",
    )
    t = g.nnlab("train", "configs/digits.yaml", "--runs-dir", RUNS, "-q")
    run = str(t.run_dir.relative_to(ROOT))
    e = g.nnlab("explain", run, "-o", "docs/saliency_digits.png", "--top", "5")
    g.commands(t, e)
    g.block(e.stdout)
    g.add("![mean |d logit / d pixel| per predicted class](saliency_digits.png)", "")
    every = g.nnlab("explain", run, "--top", "0")  # all 64 pixels ranked, to read the map
    pixels = [line.split() for line in every.stdout.splitlines() if line[:1].isdigit()]
    border, inside = [], []
    for p in pixels:  # rank, x[j], (row, r, col c), mean |grad|, ...
        r, c = int(p[3].rstrip(",")), int(p[5].rstrip(")"))
        (border if r in (0, 7) or c in (0, 7) else inside).append(float(p[6]))
    edge, middle = sum(border) / len(border), sum(inside) / len(inside)
    g.expect(edge < middle, "the border pixels matter less")
    g.add(
        "**What it shows.** `nnlab explain` averages |d logit of the predicted class / d pixel| "
        "over the test split. Each class depends on its own pixels (the panels per predicted "
        "class: where that digit's strokes differ from the others'), and the 28 border pixels, "
        f"mostly blank, matter less on average ({edge:.2f} against {middle:.2f} for the 36 "
        f"inside; from `nnlab explain {run} --top 0`). A gradient measures sensitivity at "
        "each sample, not a cause: it says which pixels would change the decision, not what "
        "an input of a class looks like (the thread's second question: a discriminative net "
        "does not give p(x | y)).",
        "",
    )


def seed_groups(g: Gallery, folders: dict[str, str], column: str) -> dict[str, dict]:
    """Per label, the values of ``column`` by seed (runs from ``nnlab compare --format csv``)."""
    groups = {}
    for label, folder in folders.items():
        rows = table_rows(
            g.nnlab("compare", folder, "--format", "csv", "-c", f"seed,{column}").stdout
        )
        groups[label] = {int(r["training.seed"]): float(r[column]) for r in rows if r[column]}
    return groups


def interval_table(groups: dict[str, dict], reference: str, what: str) -> tuple[str, dict]:
    """A markdown table: each group's mean with its 95% t-interval, and its paired comparison
    with ``reference`` (nnlab.stats); returns the table and the comparisons."""
    import numpy as np

    from nnlab.stats import compare, format_interval, summarize

    ref_seeds = sorted(groups[reference])
    ref = np.array([groups[reference][k] for k in ref_seeds])
    rows, verdicts = [], {}
    for label, values in groups.items():
        seeds = sorted(values)
        x = np.array([values[k] for k in seeds])
        cell = [label, format_interval(summarize(x))]
        if label == reference:
            cell += ["(reference)", ""]
        else:
            c = compare(x, ref, higher_is_better=True, seeds=seeds, reference_seeds=ref_seeds)
            verdicts[label] = c
            cell += [
                f"{c.diff:+.4f} [{c.low:+.4f}, {c.high:+.4f}]",
                f"{c.verdict} (p {c.p_value:.2g})",
            ]
        rows.append(cell)
    headers = ["", f"{what}: mean ± 95% interval (seeds)", f"vs {reference}", "verdict"]
    return markdown_table(headers, rows), verdicts


def semi_supervised(g: Gallery) -> None:
    g.add(
        "## 9. One input, two outputs, trained jointly on different data",
        "",
        "> *Keras: model with one input and two outputs (a classifier and an autoencoder), "
        "trained jointly, where most samples have no label (semi-supervised learning).* An "
        "answer's alternative: *use pseudo labeling.*",
        "",
        "`configs/questions/semi_supervised.yaml`: a shared trunk with a classification head "
        "and a reconstruction head on the digits, where 5% of the training samples keep their "
        "label; the classifier's loss masks the others exactly. `classifier_alone.yaml` trains "
        "the same trunk and classifier on those 5% only; `pseudo_label.yaml` trains it on all "
        "the digits with pseudo-labels: from epoch 20 on, each unlabelled digit the network "
        "classifies with probability 0.95 or more takes that class as its target "
        "(`training.pseudo_labels`; metrics.csv counts them each epoch).",
        "",
    )
    names = ("classifier_alone", "semi_supervised", "pseudo_label")
    sweeps = [
        g.nnlab("sweep", f"configs/questions/{n}.yaml", "--seeds", "10", "--jobs", "2",
                "--runs-dir", RUNS, "-q")
        for n in names
    ]  # fmt: skip
    folders = {n: f"{RUNS}/sweeps/{n}" for n in names}
    c = g.nnlab(
        "compare", *folders.values(), "--group-seeds", "-c", "test_cls_accuracy,test_accuracy",
        "--format", "markdown",
    )  # fmt: skip
    g.add(
        "Ten seeds each (the same seed picks the same labelled samples in all three; the "
        "rows in the order of the folders):",
        "",
    )
    g.commands(*sweeps, c)
    g.add(c.stdout, "")
    columns = {"classifier_alone": "test_accuracy", "semi_supervised": "test_cls_accuracy",
               "pseudo_label": "test_accuracy"}  # fmt: skip
    groups = {}
    for n in names:
        groups.update(seed_groups(g, {n: folders[n]}, columns[n]))
    table, verdicts = interval_table(groups, "classifier_alone", "test accuracy")
    g.add(
        "Test accuracy with the 95% t-interval of its mean over the seeds, and each method "
        "against the classifier alone, paired by seed (`nnlab.stats`: the paired t-test):",
        "",
        table,
        "",
    )
    last = list(csv.DictReader(next((ROOT / folders["pseudo_label"] / "trials").glob(
        "001-*/metrics.csv")).open()))  # fmt: skip
    used = int(float(last[-1]["pseudo_labels"]))
    data = summary(next((ROOT / folders["semi_supervised"] / "trials").glob("001-*")))["data"]
    labelled = round(0.05 * data["train"])
    semi, pseudo = verdicts["semi_supervised"], verdicts["pseudo_label"]
    g.expect(semi.verdict == pseudo.verdict == "better", "both use the unlabelled digits")
    g.expect(pseudo.diff > semi.diff, "pseudo-labels gain more than the reconstruction head")
    g.expect(used > 0.8 * (data["train"] - labelled), "most unlabelled digits get a pseudo-label")
    wins = sum(groups["pseudo_label"][k] > groups["classifier_alone"][k] for k in range(10))
    g.add(
        f"**What it shows.** From the same {labelled} labelled digits, the two-headed model "
        f"gains {100 * semi.diff:.1f} points of test accuracy over the classifier alone "
        f"({semi.verdict}) and pseudo-labelling {100 * pseudo.diff:.1f} ({pseudo.verdict}, "
        f"better on {wins} of 10 seeds); by its last epoch {used} of the "
        f"{data['train'] - labelled} unlabelled digits had a pseudo-label (seed 0). Both "
        "gains are about the size of the spread between seeds, and yet real: paired by seed "
        "(the same labelled digits), the interval of each difference excludes 0. Judge such "
        "methods over seeds, paired, not on one run. nnlab trains the two heads in one pass "
        "over every sample: the unlabelled ones feed the reconstruction and add nothing to the "
        "classification loss (their rows are masked, and its mean is over labelled rows), "
        "without splitting the fit into two calls as the question feared. Pseudo-labels are "
        "targets the network gives itself: they help where its confident predictions are "
        "mostly right, and they reinforce its mistakes where not (a lower confidence adds more "
        "of both).",
        "",
    )


def lstm(g: Gallery) -> None:
    g.add(
        "## 10. Does the LSTM layer learn, or only the dense layer after it?",
        "",
        "> *Each element is the previous plus 1 while it is below 10, else sin(previous). My "
        "LSTM learns the +1 step easily but not the sin step. Is the training only modifying "
        "the variables in my fully connected layer?*",
        "",
        "`configs/questions/lstm_sequence.yaml`: an LSTM of 32 units reads windows of 10 "
        "elements, a dense layer predicts the next one; the test error is reported for the +1 "
        "steps and the sin steps apart. With `training.log_layers`, `layers.csv` records the "
        "LSTM's weight and gradient norms. `dense_previous.yaml` is a dense 1-32-32-1 tanh "
        "network that sees the previous element only:",
        "",
    )
    a = g.nnlab(
        "train", "configs/questions/lstm_sequence.yaml", "--runs-dir", RUNS, "-q", "--set",
        "training.log_layers=true",
    )  # fmt: skip
    b = g.nnlab("train", "configs/questions/dense_previous.yaml", "--runs-dir", RUNS, "-q")
    c = g.nnlab("gradcheck", "configs/questions/lstm_sequence.yaml")
    for o in (a, b, c):
        g.commands(o)
        g.block(o.stdout if o is c else "\n".join(o.stdout.splitlines()[:-1]))
    rows = list(csv.DictReader((a.run_dir / "layers.csv").open()))
    lstm_rows = [r for r in rows if r["type"] == "lstm"]
    picked = [r for r in lstm_rows if int(r["epoch"]) in (0, 1, 10, 150)]
    g.add(
        "The LSTM layer's rows of `layers.csv` (`w_norm`: the norm of its input kernel W; "
        "`grad_norm`: of W's gradient on a probe batch):",
        "",
        markdown_table(
            ["epoch", "w_norm", "grad_norm", "a_std"],
            [
                [r["epoch"], *(f"{float(r[k]):.4g}" for k in ("w_norm", "grad_norm", "a_std"))]
                for r in picked
            ],
        ),
        "",
    )
    lstm_sin = summary(a.run_dir)["test_groups"]["sin"]["loss"]
    dense_sin = summary(b.run_dir)["test_groups"]["sin"]["loss"]
    w0, w_end = float(lstm_rows[0]["w_norm"]), float(lstm_rows[-1]["w_norm"])
    g.expect(lstm_sin < 0.01 < dense_sin, "the LSTM learns the sin steps, the dense net not")
    g.expect(abs(w_end - w0) > 0.1 * w0, "the LSTM's weights move")
    g.expect(c.stdout.splitlines()[-1].startswith("pass: all"), "gradcheck lstm")
    g.add(
        f"**What it shows.** The LSTM's weights train like any other (W's norm goes from "
        f"{w0:.2f} to {w_end:.2f}, its gradients check against central differences) and the "
        f"sin steps are learned: test MSE {lstm_sin:.4f} on them, "
        f"against {dense_sin:.3f} for the dense net that sees only the previous element and "
        "fits the +1 steps but not the sin steps in the same 150 epochs. If an LSTM seems not "
        "to learn, check that its variables are among those the optimizer updates (`nnlab "
        "gradcheck` lists every tensor that gets a gradient).",
        "",
    )


def invert(g: Gallery) -> None:
    g.add(
        "## 11. Can a trained network be run backwards, from y to x?",
        "",
        "> *After I've finished training the network to predict y from x, is it possible to "
        "reverse it so that it predicts x from y?* The answer: only when every layer is "
        "invertible, square weight matrices and invertible activations.",
        "",
        "`configs/invertible.yaml` trains a 2-2-2-2 tanh / leaky_relu network on `twist`, a "
        "one-to-one map of the plane; five points go forward with `nnlab predict` and back "
        "with `nnlab invert`. The digits network of question 8 is refused:",
        "",
    )
    points = ROOT / RUNS / "points.csv"
    points.write_text("x0,x1\n0.5,-0.25\n-0.8,0.1\n0.0,0.9\n0.3,0.3\n-0.6,-0.7\n")
    t = g.nnlab("train", "configs/invertible.yaml", "--runs-dir", RUNS, "-q")
    run = str(t.run_dir.relative_to(ROOT))
    p = g.nnlab("predict", run, f"{RUNS}/points.csv", "-o", f"{RUNS}/y.csv")
    i = g.nnlab("invert", run, f"{RUNS}/y.csv")
    g.commands(t, p, i)
    g.block(i.stdout)
    digits = sorted((ROOT / RUNS).glob("digits-*"))  # question 8's run
    if not digits:  # a partial gallery without question 8
        digits = [g.nnlab("train", "configs/digits.yaml", "--runs-dir", RUNS, "-q").run_dir]
    refused = subprocess.run(
        [sys.executable, "-m", "nnlab", "invert", str(digits[0].relative_to(ROOT)),
         f"{RUNS}/y.csv"],
        cwd=ROOT, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    g.commands(f"nnlab invert {digits[0].relative_to(ROOT)} {RUNS}/y.csv   # exit status 2")
    g.block(refused.stderr.strip())
    given = [[float(v) for v in line.split(",")] for line in points.read_text().split()[1:]]
    back = [[float(v) for v in r.values()] for r in table_rows(i.stdout)]
    pairs = zip(given, back, strict=True)
    worst = max(abs(a - b) for ra, rb in pairs for a, b in zip(ra, rb, strict=True))
    g.expect(worst < 1e-4, "invert recovers the points")
    g.expect(refused.returncode == 2 and "not invertible" in refused.stderr, "digits refused")
    g.add(
        f"**What it shows.** The points come back to within {worst:.1e} (float32 rounding). "
        "The digits network is refused at its first layer: 64 inputs onto 256 units is not a "
        "square matrix (and its ReLU would be next: it maps every negative input to 0). To "
        "get inputs that a classifier maps to a class, the answer's point stands: model "
        "p(x | y) (a variational autoencoder, say); `nnlab explain` shows which inputs the "
        "output is sensitive to.",
        "",
    )
    cvae(g)


def cvae(g: Gallery) -> None:
    """Question 11, continued: p(x | y) from a conditional variational autoencoder."""
    g.add(
        "**Sampling x given y: a conditional VAE.** `configs/questions/cvae.yaml` gives the "
        "label to the network as an input (`data.label_input` appends it, one-hot, to the 64 "
        "pixels): an encoder reads pixels and label and gives the mean and log-variance of an "
        "8-d code z, a `sample` layer draws z = mu + exp(log_var / 2) eps (the "
        "reparameterisation trick, from its own seed stream; z = mu in evaluation), a `slice` "
        "picks the label out of the input, and a decoder reads [z, label] and gives the pixels "
        "back. The loss is the negative ELBO per pixel: the reconstruction's binary "
        "cross-entropy plus the `kl_divergence` of the code weighted 1/64. "
        "`configs/questions/autoencoder.yaml` is the same encoder and decoder around a plain "
        "8-unit code, without label or KL term. Three seeds each, then `nnlab generate` draws "
        "z from the prior N(0, 1) and decodes it with each label:",
        "",
    )
    s1 = g.nnlab("sweep", "configs/questions/cvae.yaml", "--seeds", "3", "--jobs", "2",
                 "--runs-dir", RUNS, "-q")  # fmt: skip
    s2 = g.nnlab("sweep", "configs/questions/autoencoder.yaml", "--seeds", "3", "--jobs", "2",
                 "--runs-dir", RUNS, "-q")  # fmt: skip
    folders = {
        "conditional VAE": f"{RUNS}/sweeps/cvae",
        "autoencoder": f"{RUNS}/sweeps/autoencoder",
    }
    check = g.nnlab("gradcheck", "configs/questions/cvae.yaml")
    run = next((ROOT / folders["conditional VAE"] / "trials").glob("001-*"))
    gen = g.nnlab(
        "generate", str(run.relative_to(ROOT)), "--label", "all", "-n", "8", "-o",
        "docs/cvae_digits.png",
    )  # fmt: skip
    g.commands(s1, s2, check)
    g.block(check.stdout)
    g.commands(gen)
    g.add("![8 digits drawn for each label by the conditional VAE](cvae_digits.png)", "")
    groups = seed_groups(g, folders, "test_recon_loss")
    from nnlab.stats import format_interval, summarize

    means = {k: summarize(list(v.values())) for k, v in groups.items()}
    floor = pixel_entropy()
    g.add(
        markdown_table(
            [
                "",
                "test reconstruction loss (BCE per pixel), mean ± 95% interval",
                "above the floor",
            ],
            [[k, format_interval(m), f"{m.mean - floor:.4f}"] for k, m in means.items()],
        ),
        "",
    )
    vae, ae = means["conditional VAE"].mean, means["autoencoder"].mean
    g.expect(check.stdout.splitlines()[-1].startswith("pass: all"), "gradcheck cvae")
    g.expect(ae < vae, "the plain autoencoder reconstructs better")
    g.expect((ROOT / "docs/cvae_digits.png").is_file(), "the grid of generated digits")
    g.add(
        f"**What it shows.** Every gradient of the conditional VAE checks in float64 (the "
        "sampling layer with its noise frozen, the KL term), and decoding codes drawn from "
        "N(0, 1) with a label gives digits of that label: samples of p(x | y), which no "
        "rearrangement of a classifier gives. Its reconstructions are worse than the plain "
        f"autoencoder's: {vae - floor:.4f} nats per pixel above the floor (the pixels' own "
        f"entropy, {floor:.4f}, the least a binary cross-entropy on grey levels can reach) "
        f"against {ae - floor:.4f}, though it also knows the label: the KL term pulls every "
        "code towards N(0, 1) so that any draw from it decodes to a digit, and a code that "
        "must also be a likely draw carries less about its input. The autoencoder's codes "
        "reconstruct better but sampling them means nothing: nothing makes N(0, 1) a code it "
        "decodes.",
        "",
    )


def pixel_entropy() -> float:
    """The mean binary entropy of the unit-scaled test pixels of the digits (the split of
    seed 0, test_split 0.2): the least binary cross-entropy a reconstruction can have."""
    import numpy as np

    from nnlab.config import load_config
    from nnlab.data import load
    from nnlab.experiment import seed_streams

    cfg = load_config(ROOT / "configs/questions/autoencoder.yaml")
    X = load(cfg["data"], seed_streams(0)["data"], np.float64).test.X
    t = np.clip(X, 1e-12, 1 - 1e-12)
    return float(np.mean(-(X * np.log(t) + (1 - X) * np.log1p(-t))))


SIGMOID_INITS = {
    "random_normal(stddev=1)": "{name: random_normal, stddev: 1.0}",
    "random_normal(stddev=0.05)": "random_normal",
    "glorot_uniform": "glorot_uniform",
    "lecun_normal": "lecun_normal",
    "nguyen_widrow": "nguyen_widrow",
    "zeros": "zeros",
}


def sigmoid_init(g: Gallery) -> None:
    g.add(
        "## 12. Why are my weights trained to zero with no gain in accuracy?",
        "",
        "> *The training inputs are an 8x8 grid of [0,16) values ... The activations are a "
        "standard sigmoid ... The original weights and biases are being assigned by Gaussian "
        "distribution.* An answer: Encog's author finds that initialisation usually worse "
        "than others (Encog's default is Nguyen-Widrow).",
        "",
        "`configs/questions/sigmoid_digits.yaml` is that network: 64-30-10 sigmoid units, "
        "squared error, SGD on mini-batches of 10, N(0, 1) weights and biases, inputs in 0..16 "
        "as the question's (`data.scale: none`). The same with each weight initializer (in "
        "both layers; the biases stay N(0, 1)), on the raw inputs and scaled to [0, 1] "
        "(`data.scale: unit`), ten seeds each (`nguyen_widrow` rescales each unit's uniform "
        "weights to the norm 0.7 H^(1/N), H units reading N inputs):",
        "",
    )
    script = f"""for scale in none unit; do
  for init in {" ".join(shlex.quote(v) for v in SIGMOID_INITS.values())}; do
    name=sigmoid_$(echo "$init" | tr -dc 'a-z0-9_')_$scale
    nnlab sweep configs/questions/sigmoid_digits.yaml --seeds 10 --jobs 2 --runs-dir {RUNS} -q \\
      --name "$name" --set data.scale=$scale \\
      --set "model.layers.0.initializer=$init" --set "model.layers.1.initializer=$init"
  done
done"""
    g.shell(script)
    g.commands(script)
    folders = {}
    for scale in ("none", "unit"):
        for label, init in SIGMOID_INITS.items():
            name = "sigmoid_" + "".join(
                ch for ch in init if ch in "abcdefghijklmnopqrstuvwxyz0123456789_"
            )
            folders[label, scale] = f"{RUNS}/sweeps/{name}_{scale}"
    from nnlab.stats import format_interval, summarize

    acc = {k: seed_groups(g, {k: f}, "test_accuracy")[k] for k, f in folders.items()}
    sums = {k: summarize(list(v.values())) for k, v in acc.items()}
    g.add(
        "Test accuracy, mean ± the 95% t-interval of the mean over ten seeds:",
        "",
        markdown_table(
            ["weights", "inputs 0..16 (the question's)", "inputs scaled to [0, 1]"],
            [
                [label, *(format_interval(sums[label, sc]) for sc in ("none", "unit"))]
                for label in SIGMOID_INITS
            ],
        ),
        "",
    )
    logged = g.nnlab(
        "train", "configs/questions/sigmoid_digits.yaml", "--runs-dir", RUNS, "-q", "--set",
        "training.log_layers=true", "--set", "training.epochs=1",
    )  # fmt: skip
    first = layer_rows(logged.run_dir)[0]  # the hidden layer at initialization
    sat, z_std = float(first["saturated"]), float(first["z_std"])
    g.commands(logged)
    user, nw = sums["random_normal(stddev=1)", "none"], sums["nguyen_widrow", "none"]
    glorot = sums["glorot_uniform", "none"]
    user_unit, zeros = sums["random_normal(stddev=1)", "unit"], sums["zeros", "none"]
    g.expect(user.high < nw.low and user.high < glorot.low, "N(0, 1) on raw inputs is worst")
    g.expect(user_unit.mean > user.mean, "scaling the inputs helps N(0, 1)")
    g.expect(zeros.mean < nw.mean, "zero weights do worse than Nguyen-Widrow")
    g.expect(sat > 0.5 and z_std > 10, "N(0, 1) on raw inputs saturates the hidden layer")
    g.add(
        f"**What it shows.** With the question's setting the net ends at {user.mean:.1%} "
        f"({format_interval(user, 3)}: it also varies most from seed to seed), against "
        f"{nw.mean:.1%} with Nguyen-Widrow and {glorot.mean:.1%} with glorot_uniform: the "
        "Gaussian initialisation is the problem, not the backprop. Weights of size 1 on 64 "
        "inputs of up to 16 give the hidden units pre-activations spread over tens "
        f"(standard deviation {z_std:.0f} at initialization, `layers.csv`), and {sat:.0%} of "
        "them start saturated (slope below 5% of the sigmoid's maximum), where they pass "
        "almost no gradient back. Scaling the inputs to [0, 1] helps "
        f"({user_unit.mean:.1%}) but not to the level of the initializers sized by the fan-in "
        "(glorot_uniform, lecun_normal, or the Keras-like N(0, 0.05)) or by the unit's whole "
        "weight vector (Nguyen-Widrow), which all do about equally well here, within their "
        f"intervals. Zero weights reach {zeros.mean:.1%} only because the biases, N(0, 1) as "
        "the question's, differ from unit to unit and break the symmetry that question 1's "
        "zeros kept.",
        "",
    )


def _init_runs(g: Gallery, config: str, dense: list[int], acts: list[int], inits: dict) -> tuple:
    """The shell loop that trains ``config`` with each initializer in every dense layer (the
    indices ``dense``) and with ReLU or tanh units (activations at ``acts``); returns the
    script and {(activation, init label): Output}."""
    values = " ".join(shlex.quote(v) for v in inits.values())
    script = f"""for act in relu tanh; do
  for init in {values}; do
    sets=()
    for i in {" ".join(map(str, dense))}; do sets+=(--set "model.layers.$i.initializer=$init"); done
    if [ $act = tanh ]; then
      for i in {" ".join(map(str, acts))}; do sets+=(--set "model.layers.$i.activation=tanh"); done
    fi
    nnlab train {config} --runs-dir {RUNS} -q "${{sets[@]}}"
  done
done"""
    out = g.shell(script)
    folders = [line for line in out.stdout.splitlines() if line.startswith(RUNS + "/")]
    keys = [(act, label) for act in ("relu", "tanh") for label in inits]
    return script, {k: Output("", f, 0.0) for k, f in zip(keys, folders, strict=True)}


def batchnorm(g: Gallery) -> None:
    g.add(
        "## 13. Does batch normalization rescue a bad initialization?",
        "",
        "> *... in deep neural networks, due to the presence of hidden multi-layers, the weights "
        "initialisation should be done at each layer. A method may be using the batch "
        "normalization* (an answer to question 1)",
        "",
        "`configs/questions/init_batchnorm.yaml` is question 1's network (six hidden layers of "
        "64 on the digits, SGD with momentum, `layers.csv`) with a `batchnorm` layer between "
        "each hidden layer's product and its activation (the dense layers have no bias: "
        "batchnorm's beta takes its place). Each is trained with N(0, 1), zeros and he_normal "
        "in every dense layer, with ReLU and with tanh units, without batchnorm "
        "(`init_deep.yaml`) and with it:",
        "",
    )
    inits = {k: INITS[k] for k in ("random_normal(stddev=1)", "zeros", "he_normal")}
    _, plain = _init_runs(
        g, "configs/questions/init_deep.yaml", list(range(7)), list(range(6)), inits
    )
    bn_script, bn = _init_runs(
        g, "configs/questions/init_batchnorm.yaml", list(range(0, 19, 3)),
        list(range(2, 18, 3)), inits,
    )  # fmt: skip
    g.commands(bn_script)
    g.add(
        "(and the same loop over `configs/questions/init_deep.yaml`, its dense layers 0-6 and "
        "activations 0-5). Test accuracy:",
        "",
    )

    def result(o: Output) -> str:
        s = summary(o.run_dir)
        return f"{s['test']['accuracy']:.3f}" if s["status"] == "completed" else s["status"]

    g.add(
        markdown_table(
            ["units", "initializer", "without batchnorm", "with batchnorm"],
            [[act, label, result(plain[act, label]), result(bn[act, label])]
             for act in ("relu", "tanh") for label in inits],
        ),
        "",
    )  # fmt: skip
    big = "random_normal(stddev=1)"
    rows = {k: layer_rows(o.run_dir, epoch=1) for k, o in bn.items()}
    norms = [r for r in rows["relu", big] if r["type"] == "batchnorm"]
    sat_bn = [float(r["saturated"]) for r in rows["tanh", big] if r["activation"] == "tanh"]
    sat_plain = [float(r["saturated"]) for r in layer_rows(plain["tanh", big].run_dir, epoch=1)[:6]]
    g.add(
        "What each batchnorm layer receives and gives after the first epoch (`z_std`, `a_std` "
        "in `layers.csv`: the statistics are taken in evaluation mode, with the running "
        "averages, which after an epoch hold the batches' statistics), ReLU network with "
        "N(0, 1):",
        "",
        markdown_table(
            ["layer", "input spread (z_std)", "output spread (a_std)"],
            [[r["layer"], f"{float(r['z_std']):.3g}", f"{float(r['a_std']):.3g}"] for r in norms],
        ),
        "",
        f"Saturated tanh units after the first epoch with N(0, 1), layer by layer: without "
        f"batchnorm {', '.join(f'{x:.2f}' for x in sat_plain)}; with it "
        f"{', '.join(f'{x:.2f}' for x in sat_bn)}.",
        "",
    )
    acc = {k: summary(o.run_dir)["test"] for k, o in bn.items()}
    plain_acc = {k: summary(o.run_dir).get("test", {}) for k, o in plain.items()}
    zero_rows = [
        r for k in (("relu", "zeros"), ("tanh", "zeros"))
        for r in csv.DictReader((bn[k].run_dir / "layers.csv").open()) if r["layer"] != "18"
    ]  # fmt: skip
    spread = max(float(r["unit_spread"]) for r in zero_rows)
    majority = summary(bn["relu", "zeros"].run_dir)["baselines"]["majority"]["test"]

    def w_change(o: Output) -> float:
        w = [float(r["w_norm"]) for r in csv.DictReader((o.run_dir / "layers.csv").open())
             if r["layer"] == "3"]  # fmt: skip
        return abs(w[-1] - w[0]) / w[0]

    big_change, he_change = w_change(bn["relu", big]), w_change(bn["relu", "he_normal"])
    z_std, a_std = [float(r["z_std"]) for r in norms], [float(r["a_std"]) for r in norms]
    g.expect(
        plain_acc["relu", big].get("accuracy", 0) < 0.9 < acc["relu", big]["accuracy"],
        "relu N(0,1): batchnorm makes it train",
    )
    g.expect(
        acc["tanh", big]["accuracy"] > plain_acc["tanh", big]["accuracy"] + 0.2,
        "tanh N(0,1): batchnorm makes it train",
    )
    g.expect(
        all(0.7 < float(r["a_std"]) < 1.3 and float(r["z_std"]) > 4 for r in norms),
        "batchnorm outputs spread about 1 from inputs spread 4+",
    )
    g.expect(max(sat_bn) < 0.05 and min(sat_plain) > 0.5, "batchnorm ends tanh saturation")
    g.expect(spread == 0.0, "zeros stay symmetric with batchnorm")
    g.expect(
        acc["relu", "zeros"]["accuracy"] == acc["tanh", "zeros"]["accuracy"] == majority,
        "zeros: the majority class with batchnorm",
    )
    g.expect(
        acc["relu", big]["accuracy"] < acc["relu", "he_normal"]["accuracy"]
        and big_change < he_change / 2,
        "N(0,1) under batchnorm: big weights move slowly",
    )
    g.add(
        "**What it fixes.** Batchnorm divides each unit's pre-activation by its spread over the "
        "batch, so the scale of the weights before it no longer reaches the activation: with "
        f"N(0, 1) the inputs of the batchnorm layers spread {min(z_std):.1f} to "
        f"{max(z_std):.1f} and their outputs {min(a_std):.2f} to {max(a_std):.2f}, "
        "layer after layer, where without batchnorm the spread grew about 5x a layer (question "
        f"1). The ReLU network that {summary(plain['relu', big].run_dir)['status']} without it "
        f"reaches {acc['relu', big]['accuracy']:.3f} test accuracy; the tanh network, "
        f"{max(sat_plain):.0%} of whose units were saturated, keeps {max(sat_bn):.0%} or fewer "
        f"saturated and goes from {plain_acc['tanh', big]['accuracy']:.3f} to "
        f"{acc['tanh', big]['accuracy']:.3f}.",
        "",
        "**What it cannot fix.** Zeros: every unit of a layer computes the same 0, the batch "
        "has no spread to normalize (batchnorm gives beta, the same for every unit) and every "
        "unit gets the same gradient, so they stay copies of each other (`unit_spread` "
        f"{spread:g} in every hidden layer and epoch, with ReLU and tanh) and the network "
        f"predicts the majority class ({majority:.3f}), as without batchnorm. And a scale it "
        "hides still costs something: the output of a batchnorm layer does not change when the "
        "weights before it are multiplied by a constant, so their gradient shrinks as they "
        "grow, and N(0, 1) weights, 5.7 times he_normal's, barely move (the norm of layer 3's "
        f"weights changes by {big_change:.1%} over the 30 epochs, against {he_change:.1%} from "
        f"he_normal): it ends at {acc['relu', big]['accuracy']:.3f} against "
        f"{acc['relu', 'he_normal']['accuracy']:.3f} from he_normal with batchnorm. A sensible "
        "initialization still matters; batchnorm makes a bad scale survivable, not free.",
        "",
    )


def conv_autoencoder(g: Gallery) -> None:
    g.add(
        "## 14. An autoencoder and a classifier sharing a convolutional trunk, with few labels",
        "",
        '> *... if the model would have the same input data shape and the same "encoding" '
        "convolutional layers, but would split into two heads (fork-style), so there is a "
        "classification head and a decoding head, in a way that the unsupervised autoencoder "
        "will contribute to a good learning for the classification head* (question 9)",
        "",
        "`configs/questions/semi_supervised_conv.yaml` reads the digits as 8x8x1 images: a "
        "trunk of two 3x3 convolutions of 16 filters around a 2x2 max pooling, a classifier on "
        "the trunk's 4x4x16 maps, and a decoder that upsamples them back to 8x8 and gives the "
        "image with a 3x3 convolution of one filter (sigmoid); 5% of the training samples keep "
        "their label. `classifier_alone_conv.yaml` is the trunk and classifier on those 5% only. "
        "Their gradients first (a graph with two outputs, the masks of the unlabelled samples, "
        "pooling and upsampling):",
        "",
    )
    check = g.nnlab("gradcheck", "configs/questions/semi_supervised_conv.yaml", "--entries", "200")
    g.commands(check)
    g.block(check.stdout)
    g.expect(check.stdout.splitlines()[-1].startswith("pass: all"), "gradcheck conv autoencoder")
    sweeps = []
    for name in ("semi_supervised_conv", "classifier_alone_conv", "semi_supervised",
                 "classifier_alone"):  # fmt: skip
        if not (ROOT / RUNS / "sweeps" / name).exists():  # question 9 ran the dense ones
            sweeps.append(g.nnlab(
                "sweep", f"configs/questions/{name}.yaml", "--seeds", "5", "--jobs", "2",
                "--runs-dir", RUNS, "-q",
            ))  # fmt: skip
    folders = [f"{RUNS}/sweeps/{n}" for n in ("semi_supervised_conv", "classifier_alone_conv",
                                               "semi_supervised", "classifier_alone")]  # fmt: skip
    c = g.nnlab(
        "compare", *folders, "--group-seeds", "-c", "layers.0.type,unlabelled,test_cls_accuracy,"
        "test_accuracy,test_recon_loss", "--format", "markdown",
    )  # fmt: skip
    g.add(
        "Five seeds each (a seed picks the same labelled samples in all four; `layers.0.type` "
        "tells the convolutional models, whose first layer is the reshape, from question 9's "
        "dense ones, `unlabelled: drop` the classifiers alone):",
        "",
    )
    g.commands(*sweeps, c)
    g.add(c.stdout, "")
    rows = table_rows(
        g.nnlab(
            "compare", *folders, "--format", "csv", "-c",
            "model.layers.0.type,data.unlabelled,training.seed,test_cls_accuracy,test_accuracy",
        ).stdout
    )  # fmt: skip
    names = {("reshape", "keep"): "semi_supervised_conv", ("reshape", "drop"):
             "classifier_alone_conv", ("dense", "keep"): "semi_supervised",
             ("dense", "drop"): "classifier_alone"}  # fmt: skip
    acc: dict[str, dict[str, float]] = {}
    for r in rows:
        name = names[r["model.layers.0.type"], r["data.unlabelled"]]
        acc.setdefault(name, {})[r["training.seed"]] = float(
            r["test_cls_accuracy"] or r["test_accuracy"]
        )
    import statistics

    def wins(a: str, b: str) -> int:
        return sum(acc[a][k] > acc[b][k] for k in acc[a])

    def gain(a: str, b: str) -> float:
        return statistics.mean(acc[a][k] - acc[b][k] for k in acc[a])

    mean = {n: statistics.mean(v.values()) for n, v in acc.items()}
    labelled = round(0.05 * 1258)
    spread = statistics.stdev(acc["classifier_alone_conv"].values())
    g_conv, g_dense = (
        gain("semi_supervised_conv", "classifier_alone_conv"),
        gain("semi_supervised", "classifier_alone"),
    )
    g.expect(
        wins("semi_supervised_conv", "semi_supervised") >= 4
        and wins("classifier_alone_conv", "classifier_alone") >= 4,
        "the convolutional trunk beats the dense one",
    )
    g.expect(mean["classifier_alone_conv"] > mean["semi_supervised"], "conv alone > dense semi")
    g.expect(g_conv < g_dense and abs(g_conv) < spread, "the decoder adds little to a conv trunk")
    g.add(
        "**What it shows.** The fork-style model is one config: a convolutional trunk, a "
        "classification head and a decoding head, trained jointly in one pass over every "
        "sample (the unlabelled ones feed only the decoder). The convolutional trunk beats "
        f"the dense trunk of question 9 on {wins('semi_supervised_conv', 'semi_supervised')} "
        f"of 5 seeds with the decoder and on {wins('classifier_alone_conv', 'classifier_alone')}"
        f" without it; from the {labelled} labelled digits alone it reaches "
        f"{mean['classifier_alone_conv']:.3f} test accuracy on average, more than the dense "
        "trunk with the decoder and all the "
        f"unlabelled digits ({mean['semi_supervised']:.3f}): the convolution's prior (small "
        "filters shared across the image) gives more than the reconstruction gave the dense "
        f"trunk. And the decoder adds less here: {100 * g_conv:+.1f} points on average (better on "
        f"{wins('semi_supervised_conv', 'classifier_alone_conv')} of 5 seeds), within the "
        f"seed-to-seed spread ({100 * spread:.1f} points), against {100 * g_dense:+.1f} for the "
        "dense trunk. On the 8x8 digits the unlabelled images have little left to teach a "
        "convolutional trunk; whether they have more on the question's STL-10 (96x96 colour "
        "images, 100,000 of them unlabelled) is not measured here.",
        "",
    )


SECTIONS = [
    initialization,
    init_lr,
    threshold,
    learnable,
    dropout,
    xor,
    gradcheck,
    mnist,
    saliency,
    semi_supervised,
    lstm,
    invert,
    sigmoid_init,
    batchnorm,
    conv_autoencoder,
]


def main(only: list[str]) -> int:
    """Run every section (or the named ones, for a partial page in runs/gallery)."""
    sections = [s for s in SECTIONS if not only or s.__name__ in only]
    if only and len(sections) != len(only):
        sys.exit(f"gallery: sections are {', '.join(s.__name__ for s in SECTIONS)}")
    runs = ROOT / RUNS
    if runs.exists():
        shutil.rmtree(runs)
    runs.mkdir(parents=True)
    g = Gallery()
    g.add(
        "# The questions nnlab answers",
        "",
        "Questions people asked while training small networks by hand, each answered by an "
        "experiment in `configs/questions/` (and `configs/sweeps/`) and the nnlab commands "
        "below. Everything on this page, tables, numbers and images, was produced by those "
        "commands: `make gallery` reruns them all (into `runs/gallery/`) and rewrites the page, "
        "checking that the claims in the text still hold.",
        "",
    )
    t0 = time.perf_counter()
    for section in sections:
        section(g)
    minutes = (time.perf_counter() - t0) / 60
    g.add(f"*Generated by `make gallery` in {minutes:.1f} minutes.*", "")
    from nnlab.runs import atomic_write

    page = PAGE if not only else runs / "questions-partial.md"
    atomic_write(page, "\n".join(g.parts))
    print(f"gallery: wrote {page.relative_to(ROOT)} in {minutes:.1f} min", file=sys.stderr)
    if g.failures:
        print("claims that no longer hold:\n  " + "\n  ".join(g.failures), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
