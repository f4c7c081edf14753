"""fANOVA (Hutter et al. 2014) of a table of configs through Optuna's evaluator.

A set of configs (a value per axis each) becomes an in-memory Optuna study, one completed
trial per config (``optuna.trial.create_trial``), and ``FanovaImportanceEvaluator`` fits a
random forest (scikit-learn's) to their objective and splits its variance over the search space,
uniform in each axis. Optuna's fANOVA measures numeric axes on their raw scale, so an axis on a
log scale (a ``log=True`` distribution, or inferred: positive values spread more evenly in log)
is handed over as log10 of its values. Optuna and scikit-learn are the ``search`` extra.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from nnlab.errors import ConfigError, DataError, NnlabError


def optuna_module() -> Any:
    """optuna (with scikit-learn, which its fANOVA fits the forest with), or an error naming
    the extra."""
    try:
        import optuna
        import sklearn.ensemble  # noqa: F401
    except ImportError as e:
        raise NnlabError(
            f"fANOVA needs optuna and scikit-learn ({e}): pip install 'nnlab[search]'"
        ) from None
    return optuna


@contextlib.contextmanager
def _quiet(optuna: Any) -> Iterator[None]:
    """Optuna's INFO lines ('A new study created in memory') off, and back as they were."""
    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(before)


class Fanova:
    """fANOVA main effects of fixed configs, refit for each set of objective values.

    Parameters
    ----------
    axes : list of str
        The axis names.
    keys : list of tuples
        Each config's axis values, in the order of ``axes``.
    levels : mapping axis -> list
        Each axis's distinct values; axes with one value are left out (``names`` has the rest).
    given : mapping axis -> optuna distribution
        The search space of some axes; the others are inferred from their values.
    n_trees, seed : int
        The forest's size and seed.
    """

    def __init__(
        self,
        axes: Sequence[str],
        keys: Sequence[tuple],
        levels: Mapping[str, list],
        given: Mapping[str, Any],
        n_trees: int = 64,
        seed: int = 0,
    ):
        self.optuna = optuna_module()
        self.names = [a for a in axes if len(levels[a]) > 1]
        spaces = {a: space(self.optuna, a, levels[a], given.get(a)) for a in self.names}
        col = {a: i for i, a in enumerate(axes)}
        self.params = [{a: spaces[a][1](key[col[a]]) for a in self.names} for key in keys]
        self.dists = {a: spaces[a][0] for a in self.names}
        self.forest = {"n_trees": n_trees, "seed": seed}

    def shares(self, values: np.ndarray) -> np.ndarray:
        """Each axis's main-effect share of the forest's variance (the order of ``names``),
        then the rest (1 - their sum); all 0 when the values do not vary.

        Parameters
        ----------
        values : ndarray, shape (n_configs,)

        Returns
        -------
        ndarray, shape (len(names) + 1,)
        """
        if np.ptp(values) == 0:
            return np.zeros(len(self.names) + 1)
        optuna = self.optuna
        with _quiet(optuna):
            study = optuna.create_study()
            trial = optuna.trial.create_trial
            study.add_trials(
                [
                    trial(params=p, distributions=self.dists, value=float(v))
                    for p, v in zip(self.params, values, strict=True)
                ]
            )
            found = optuna.importance.FanovaImportanceEvaluator(**self.forest).evaluate(study)
        mains = np.array([float(found[a]) for a in self.names])
        return np.append(mains, max(1.0 - mains.sum(), 0.0))


def space(optuna: Any, axis: str, levels: list, given: Any) -> tuple[Any, Callable]:
    """The distribution fANOVA integrates an axis over, and the map from a value to the
    study's parameter (log10 for a log axis)."""
    dist = optuna.distributions
    if given is None:
        numbers = all(isinstance(x, int | float) and not isinstance(x, bool) for x in levels)
        if not numbers:
            return dist.CategoricalDistribution(levels), _same
        log = spread_evenly_in_log(np.array(levels, dtype=np.float64))
        low, high = float(min(levels)), float(max(levels))
    elif isinstance(given, dist.CategoricalDistribution):
        missing = [x for x in levels if x not in given.choices]
        if missing:
            raise DataError(f"{axis}: {missing[0]!r} is not among the choices {given.choices}")
        return given, _same
    elif isinstance(given, dist.FloatDistribution | dist.IntDistribution):
        log, low, high = given.log, float(given.low), float(given.high)
        outside = [x for x in levels if not isinstance(x, int | float) or not low <= x <= high]
        if outside:
            raise DataError(f"{axis}: {outside[0]!r} is outside [{given.low}, {given.high}]")
    else:
        raise ConfigError(f"not an optuna distribution: {given!r}", f"distributions.{axis}")
    if log:
        return dist.FloatDistribution(math.log10(low), math.log10(high)), math.log10
    return dist.FloatDistribution(low, high), float


def _same(x: Any) -> Any:
    return x


def spread_evenly_in_log(x: np.ndarray) -> bool:
    """True when the distinct values are all positive and lie more evenly on the log scale
    than on the linear one (the largest distance of their positions from an even spacing);
    fewer than 3 distinct values say nothing: False."""
    u = np.unique(x)
    if u.size < 3 or u[0] <= 0:
        return False
    even = np.linspace(0.0, 1.0, u.size)

    def unevenness(v: np.ndarray) -> float:
        return float(np.max(np.abs((v - v[0]) / (v[-1] - v[0]) - even)))

    return unevenness(np.log(u)) < unevenness(u)
