"""Pseudo-labelling (Lee 2013): the training samples without a label (``data.label_fraction``)
take the class the network predicts for them as their target, when it predicts it confidently.

With ``training.pseudo_labels``, at the start of each epoch from ``start`` on, the model (in
evaluation mode, with the weights of the epoch before) predicts every unlabelled training
sample; those whose top class probability is at least ``confidence`` get that class as their
target, with weight ``weight`` in the loss (ramped up linearly over ``ramp`` epochs), and the
others stay out of it. The targets are recomputed every epoch, so a sample can gain, change or
lose its pseudo-label. Nothing is random and nothing is kept between epochs but the weights:
a resumed run makes the same pseudo-labels. Accuracies count the labelled samples only; the
loss is the weighted mean over labelled and pseudo-labelled samples.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nnlab.errors import ConfigError

Array = np.ndarray
WHERE = "training.pseudo_labels"


class PseudoLabels:
    """The pseudo-labels of one run's training split, updated in place each epoch."""

    def __init__(self, exp: Any, spec: dict):
        self.exp, self.spec = exp, spec
        self.k = self._head(exp, spec["output"])
        head = exp.heads[self.k]
        if head.loss.fused_activation is None and exp.model.output_activations[self.k] not in (
            "softmax",
            "sigmoid",
        ):
            raise ConfigError(
                f"pseudo-labels need class probabilities, but output {head.name or 'the output'} "
                f"has no softmax or sigmoid activation",
                WHERE,
            )
        self.targets = exp.targets["train"][self.k]
        if self.targets.W is None:
            raise ConfigError(
                "pseudo-labelling needs training samples without a label: set "
                "data.label_fraction below 1 (with data.unlabelled: keep)",
                WHERE,
            )
        self.rows = np.flatnonzero(self.targets.W == 0)  # the unlabelled samples
        self.count = 0  # pseudo-labels used in the current epoch

    @staticmethod
    def _head(exp: Any, name: str | None) -> int:
        labelled = [k for k, h in enumerate(exp.heads) if h.target == "labels"]
        if name is not None:
            names = [exp.heads[k].name for k in labelled]
            if name not in names:
                raise ConfigError(
                    f"{name!r} is not an output trained on labels (those: {', '.join(names)})",
                    f"{WHERE}.output",
                )
            return labelled[names.index(name)]
        if not labelled or exp.data.task != "classification":
            raise ConfigError("pseudo-labelling needs a classifier output", WHERE)
        return labelled[0]

    def weight(self, epoch: int) -> float:
        """The pseudo-labels' weight in a 0-based epoch (0 before ``start``)."""
        done = epoch + 1 - self.spec["start"]  # epochs of pseudo-labelling before this one
        if done < 0:
            return 0.0
        ramp = self.spec["ramp"]
        return self.spec["weight"] * (min(1.0, (done + 1) / ramp) if ramp else 1.0)

    def update(self, epoch: int) -> int:
        """Set the targets of the unlabelled samples for a 0-based epoch; returns how many got
        a pseudo-label."""
        w = self.weight(epoch)
        if w == 0.0 or not self.rows.size:
            self.count = 0
            return 0
        probs = self._probabilities(self.exp.data.train.X[self.rows])  # (n, classes)
        cls = probs.argmax(axis=1)
        chosen = probs[np.arange(cls.size), cls] >= self.spec["confidence"]
        T, W = self.targets.T, self.targets.W
        head = self.exp.heads[self.k]
        W[self.rows] = 0.0
        picked = self.rows[chosen]
        T[picked] = head.loss.targets(cls[chosen], T.shape[1], T.dtype)
        W[picked] = w
        self.count = int(picked.size)
        return self.count

    def _probabilities(self, X: Array) -> Array:
        """Class probabilities (n, classes) of the head, in evaluation mode."""
        model = self.exp.model
        outs = model.predict(X)
        out = outs if model.n_outputs == 1 else outs[self.k]
        if out.shape[1] == 1:  # one sigmoid unit: the probability of class 1
            return np.concatenate([1.0 - out, out], axis=1)
        return out
