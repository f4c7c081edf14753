"""Sweeps: a grid over any config keys, times seeds, run in parallel processes and resumable;
or a search, where Optuna samples the axes (``nnlab.sweeps.search``).

``load_sweep`` reads a sweep file (or a config with command-line axes), ``check_trials`` validates
every trial before any runs, ``run_sweep`` runs what is not done yet in ``RUNS/sweeps/NAME/``.
"""

from nnlab.sweeps.executor import Executor, LocalExecutor, TrialOutcome, TrialTask
from nnlab.sweeps.folder import sweep_dir_for
from nnlab.sweeps.listing import trial_table
from nnlab.sweeps.runner import SweepResult, run_sweep
from nnlab.sweeps.spec import Sweep, Trial, check_trials, load_sweep

__all__ = [
    "Executor",
    "LocalExecutor",
    "Sweep",
    "SweepResult",
    "Trial",
    "TrialOutcome",
    "TrialTask",
    "check_trials",
    "load_sweep",
    "run_sweep",
    "sweep_dir_for",
    "trial_table",
]
