"""Populations: many networks of one shape trained in one NumPy pass, each member the same
experiment as its single run (``nnlab.population.run``: ``train_population``,
``train_seeds``; ``nnlab.population.partition``: which trials train together)."""
