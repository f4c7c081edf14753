"""Which of a sweep's trials train together: the trials to run, as units of work.

With populations on (the default), trials whose resolved configs differ only in member-wise keys
(seeds, initializers, learning rates, ...: ``nnlab.population.partition``) form a population,
trained in one process by the population engine, each member into its own run folder. A group
is split so that each population fits in memory and, with several workers, so that each worker
gets one. A trial runs alone when no other trial has its shape, or when a part of it has no
population version (a recurrent layer, ``training.log_layers``, ...). With populations off,
every trial runs alone. The index records for each trial which population it ran in, or why it
ran alone.

An unfinished trial (a sweep killed or interrupted) that runs alone continues from its
checkpoint, as a single run; one that belongs to a population trains again from the start with
it (``restarted``): populations do not continue from checkpoints, and a member's whole training
costs less than the rest of a single run's (XOR: 40 members of 60,000 epochs, killed a quarter
of the way, took 92 s to finish as single runs from their checkpoints, 3 s as a population from
the start).
"""

from __future__ import annotations

from dataclasses import dataclass

from nnlab.sweeps.spec import Trial

OFF = "--population off"


@dataclass
class Unit:
    """Trials that run as one task: a population (``number`` counts them from 1) or a trial
    alone (``why``)."""

    trials: list[Trial]
    number: int | None = None
    why: str | None = None

    def describe(self) -> str:
        """For the index and --print-trials: the population, or why the trial runs alone."""
        if self.number is not None:
            return f"population {self.number} ({len(self.trials)} trials)"
        return f"alone: {self.why}"


def plan_units(todo: list[Trial], slots: int, population: bool) -> list[Unit]:
    """The trials ``todo`` as units: populations first (the larger work first, so that the last
    units to start are small), then the trials that run alone, each in grid order. ``slots``:
    the workers, each of which should get a population."""
    if not population:
        return [Unit([t], why=OFF) for t in todo]
    from nnlab.population.run import plan_units as group

    groups = group([t.config for t in todo], slots)
    units = [Unit([todo[i] for i in members], number=k + 1)
             for k, members in enumerate(groups.populations)]  # fmt: skip
    units += [Unit([todo[i]], why=why) for i, why in groups.alone.items()]
    return units


def restarted(units: list[Unit], resume: set[str]) -> set[str]:
    """The trials of ``resume`` (unfinished, with a checkpoint) that train again from the
    start, in a population."""
    return {t.hash for u in units if u.number is not None for t in u.trials} & resume


def units_to_run(
    todo: list[Trial], resume: set[str], slots: int, population: bool
) -> tuple[list[Unit], list[str]]:
    """``plan_units``, and the notes a sweep says about them; the trials of ``resume`` that
    train again from the start in a population are taken out of it."""
    units = plan_units(todo, slots, population)
    again = restarted(units, resume)
    resume -= again
    notes = alone_notes(units)
    if again:
        notes.append(f"{len(again)} unfinished trial(s) train again from the start in their "
                     "population (populations do not continue from checkpoints)")  # fmt: skip
    return units, notes


def runs_as(todo: list[Trial], resume: set[str], slots: int) -> dict[str, str]:
    """What each trial of ``todo`` would run as (``Unit.describe``), for --print-trials;
    ``resume`` loses the trials that would train again in a population."""
    units, _ = units_to_run(todo, resume, slots, True)
    return {t.hash: u.describe() for u in units for t in u.trials}


def record_unit(entry: dict, unit: Unit) -> None:
    """Into a trial's index entry: the population it runs in, or why it runs alone."""
    entry.pop("population", None)
    entry.pop("alone", None)
    if unit.number is not None:
        entry["population"] = {"number": unit.number, "members": len(unit.trials)}
    else:
        entry["alone"] = unit.why


def alone_notes(units: list[Unit]) -> list[str]:
    """One line per reason trials run alone (with populations on), with how many."""
    by: dict[str, list[int]] = {}
    for u in units:
        if u.number is None and u.why != OFF:
            by.setdefault(str(u.why), []).append(u.trials[0].number)
    notes = []
    for why, numbers in by.items():
        shown = ", ".join(f"#{n}" for n in numbers[:5]) + (", ..." if len(numbers) > 5 else "")
        notes.append(f"{len(numbers)} trial(s) run alone ({shown}): {why}")
    return notes
