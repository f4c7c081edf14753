"""nnlab: neural-network experiments, one command each, on a NumPy core."""

__version__ = "0.1.0"
