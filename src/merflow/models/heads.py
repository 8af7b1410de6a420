"""Small heads on pretrained embeddings: what learns from a clip's vector (``clip`` features).

``mlp``: one hidden layer (``hidden`` units, ReLU, ``dropout``) and a linear output, trained like
every network (merflow's recipe: AdamW, early stopping on the training songs' validation part,
the best epochs' checkpoint ensemble), on z-scored embeddings. Its options are declared in
:data:`merflow.models.options.MLP`.
"""

from __future__ import annotations

import torch
from torch import nn

from merflow.models.network import Network


class MLPHead(Network):
    def __init__(self, n_features: int, n_outputs: int, hidden: int, dropout: float):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(n_features, hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, n_outputs),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, n_features)`` vectors -> ``(B, n_outputs)`` logits."""
        return self.layers(x)

    def penalty(self) -> torch.Tensor:
        return torch.zeros((), device=self.layers[0].weight.device)


def build_mlp(*, n_features: int, n_outputs: int, hidden: int, dropout: float) -> MLPHead:
    return MLPHead(n_features, n_outputs, hidden, dropout)
