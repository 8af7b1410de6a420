"""What the training loop needs of a network (:class:`Network`), and several trained states of
one network as one model (:class:`CheckpointEnsemble`).

The loop (:mod:`merflow.learn.training`) trains ``model(x)`` against the targets plus
``model.penalty()``; every network the registry builds declares both by deriving from
:class:`Network`, and :func:`merflow.models.build_model` refuses one that does not.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence

import torch
from torch import nn


class Network(nn.Module, abc.ABC):
    """A network merflow trains: ``forward`` maps a batch of inputs to the outputs the loss
    compares with the targets (arousal/valence per window, or class logits), ``penalty`` is the
    regularization term added to that loss (the papers' L1/L2 on weights and activations, a
    Keras-style sum; a zero tensor when the network has none)."""

    @abc.abstractmethod
    def forward(self, x: torch.Tensor) -> torch.Tensor: ...

    @abc.abstractmethod
    def penalty(self) -> torch.Tensor: ...


class CheckpointEnsemble(Network):
    """Several trained states of one network as one model (``checkpoint_ensemble``).

    A classifier's output is the log of its members' mean class probabilities, so that the
    softmax every caller applies gives that mean back; a regressor's output is the mean of its
    members' outputs.
    """

    def __init__(self, members: Sequence[Network], task: str):
        super().__init__()
        self.members = nn.ModuleList(members)
        self.task = task

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs = torch.stack([member(x).float() for member in self.members])
        if self.task == "classification":
            return torch.log(torch.softmax(outputs, dim=-1).mean(0))
        return outputs.mean(0)

    def penalty(self) -> torch.Tensor:
        return torch.stack([member.penalty() for member in self.members]).mean()
