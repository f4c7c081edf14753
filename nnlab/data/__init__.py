"""Data sets by name (``DATASETS``) and ``load`` to split and scale them."""

from nnlab.data import csv, digits, mnist, sequence, toy  # noqa: F401  (register the data sets)
from nnlab.data.base import DATASETS, Data, DataOptions, Raw, Split, load

__all__ = ["DATASETS", "Data", "DataOptions", "Raw", "Split", "load"]
