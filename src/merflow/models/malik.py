"""Malik et al. 2017: stacked convolutional and recurrent networks, arousal/valence every 500 ms.

Input ``(B, T, F)``: ``T`` consecutive 500 ms windows (any ``T``; the paper trains on 10, 20, 30
and 60) of ``F`` features (the 260 ComParE statistics, or log-mel bands). Output ``(B, T, 2)``:
arousal and valence for every window, in that order.

The network (the paper's Figure 1, Sections 2 and 3.5)::

    x (B, T, F) -> Conv2D 3x3, 8 filters, 'same', over (time x features) -> BatchNorm -> ReLU
      -> dropout                                         feature map (B, 8, T, F)
      -> per time step, flatten (8 x F)                  (B, T, 8F)
      -> branch "arousal" | branch "valence":
           time-distributed dense (8, linear) -> bidirectional GRU (8 + 8, concatenated)
           -> time-distributed maxout (1 unit)           (B, T, 1) each
      -> concatenate                                     (B, T, 2)

``malik_crnn_nb`` (the paper's Figure 2) is the same trunk with a single branch whose maxout layer
has two units, one per dimension.

Decisions where the paper is silent (each is a keyword option; declared, with its default and
allowed values, in :data:`merflow.models.options.MALIK`):

* ``maxout_pieces=4``: the number of linear pieces per maxout unit is not given; 4 is the default
  of Keras 1's ``MaxoutDense``, the layer the authors' Keras/Theano code would have used.
* Dropout ``dropout`` (0.25; the paper uses 0.75 on log-mel bands, see :data:`FEATURE_OPTIONS`)
  is applied to the CNN's feature map and to the GRU's input (one mask per sequence, Keras'
  recurrent-layer ``dropout``), the "dropout for the CNN and RNN layers" of Section 2. Keras'
  recurrent dropout on the hidden state has no counterpart in PyTorch's fused GRU and is left out.
* ElasticNet ``l1=0.1``, ``l2=0.001`` "for the weights and activity of the CNN": on the
  convolution kernel (Keras' weight regularizer: sums) and on the convolution's output, before
  BatchNorm (Keras' activity regularizer of the Conv2D layer). How the activity term is reduced
  is ``activity_reduction``: ``"mean"`` (default) averages over every activation, so one
  coefficient means the same at every sequence length and feature count; ``"sum"`` is Keras 1's
  sum over units and mean over the batch. With 8 x T x F activations per sequence the latter
  outweighs the RMSE loss a thousandfold (penalty ~1000 against an RMSE of 0.6 at T = 20 on 260
  features); on a learnable synthetic task it drove the kernels to zero and the validation RMSE
  back above the predict-the-mean baseline within 15 epochs, while ``"mean"`` learned (0.11
  against a baseline of 0.61 after 30 epochs). Because BatchNorm follows the convolution, the
  weight term only shrinks the kernel's scale, which BatchNorm undoes: expect the kernels to
  settle nearly a hundred times smaller than at initialization.
* No input BatchNorm: features arrive z-scored with training-split statistics, which the
  training stage stores with the model. A BatchNorm on the input would be a second,
  batch-dependent normalization the paper does not describe.
* GRU gates use PyTorch's sigmoid where Keras 1 defaulted to a hard sigmoid; BatchNorm keeps
  PyTorch's momentum and epsilon. Initialization follows Keras (``init="keras"``).

Parameter counts (trainable; ``count_parameters``): 35,256 on the 260 features, 17,744 without
branching, 10,168 on 64 log-mel bands. The paper rounds the first to "about 30 k" but its own
numbers pin it higher: the time-distributed dense layer alone holds 8 x (8 x 260) + 8 = 16,648
weights per branch, so two branches cannot fit in 30 k, while the single-branch network it calls
"about 17 k" (17,744 here) and the log-mel network it calls "about 10 k" (10,168 with 64 bands)
agree with this architecture. Keras 1 would report 48 fewer GRU biases per branch (one bias
vector per gate where PyTorch has two) and 16 more BatchNorm values (its moving statistics);
neither changes the picture.
"""

from __future__ import annotations

import torch
from torch import nn

from merflow.errors import ConfigError
from merflow.models.blocks import Maxout, SequenceDropout, elastic_net, keras_init_
from merflow.models.network import Network

# Section 3.5: the log-mel network keeps "the exact configuration ... with only the dropout changed
# to 0.75". Training merges this under the user's model_options for the feature it trains on.
FEATURE_OPTIONS: dict[str, dict[str, float]] = {
    "compare_500ms": {"dropout": 0.25},
    "deam_opensmile": {"dropout": 0.25},
    "logmel_500ms": {"dropout": 0.75},
}


class ConvFrontEnd(nn.Module):
    """Conv2D over (time x features) -> BatchNorm -> ReLU -> dropout, keeping the convolution's
    output of the last forward pass for the activity regularizer."""

    def __init__(self, filters: int, kernel_size: int, dropout: float):
        super().__init__()
        self.conv = nn.Conv2d(1, filters, kernel_size, padding="same")
        self.norm = nn.BatchNorm2d(filters)
        self.relu = nn.ReLU()
        self.dropout = nn.Dropout(dropout)
        self.activity: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.activity = self.conv(x.unsqueeze(1))  # (B, filters, T, F)
        return self.dropout(self.relu(self.norm(self.activity)))

    def __getstate__(self) -> dict:
        # The kept activity is part of an autograd graph: copies and pickles leave it behind
        # (copy.deepcopy of a model, e.g. to keep the best epoch, would fail on it otherwise).
        return {**super().__getstate__(), "activity": None}


class RecurrentBranch(nn.Module):
    """Time-distributed dense (linear) -> bidirectional GRU -> time-distributed maxout."""

    def __init__(
        self,
        in_features: int,
        n_outputs: int,
        dense_units: int,
        gru_units: int,
        maxout_pieces: int,
        dropout: float,
    ):
        super().__init__()
        self.dense = nn.Linear(in_features, dense_units)
        self.gru_dropout = SequenceDropout(dropout)
        self.gru = nn.GRU(dense_units, gru_units, batch_first=True, bidirectional=True)
        self.maxout = Maxout(2 * gru_units, n_outputs, maxout_pieces)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        z = self.gru_dropout(self.dense(h))
        z, _ = self.gru(z)
        return self.maxout(z)


class MalikCRNN(Network):
    """The stacked CNN-RNN of Malik et al. 2017; ``branched=False`` gives CRNN_NB.

    With ``branched=True`` there is one :class:`RecurrentBranch` per output (arousal, valence);
    otherwise one branch predicts all outputs.
    """

    def __init__(
        self,
        n_features: int,
        n_outputs: int = 2,
        *,
        branched: bool = True,
        filters: int = 8,
        kernel_size: int = 3,
        dense_units: int = 8,
        gru_units: int = 8,
        maxout_pieces: int = 4,
        dropout: float = 0.25,
        l1: float = 0.1,
        l2: float = 0.001,
        activity_reduction: str = "mean",
        init: str = "keras",
    ):
        super().__init__()
        self.n_features = n_features
        self.l1, self.l2 = float(l1), float(l2)
        self.activity_reduction = activity_reduction

        self.cnn = ConvFrontEnd(filters, kernel_size, dropout)
        n_branches, outputs_per_branch = (n_outputs, 1) if branched else (1, n_outputs)
        self.branches = nn.ModuleList(
            RecurrentBranch(
                filters * n_features,
                outputs_per_branch,
                dense_units,
                gru_units,
                maxout_pieces,
                dropout,
            )
            for _ in range(n_branches)
        )
        if init == "keras":
            keras_init_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, T, F)`` windows -> ``(B, T, n_outputs)`` (arousal, valence)."""
        if x.dim() != 3 or x.shape[-1] != self.n_features:
            raise ConfigError(
                f"model built for windows (batch, time, {self.n_features} features) got "
                f"{tuple(x.shape)}; build it with n_features of the feature table it reads"
            )
        feature_map = self.cnn(x)  # (B, filters, T, F)
        per_step = feature_map.transpose(1, 2).flatten(2)  # (B, T, filters * F)
        return torch.cat([branch(per_step) for branch in self.branches], dim=-1)

    def penalty(self) -> torch.Tensor:
        """ElasticNet on the CNN's kernel and on its activity in the last forward pass."""
        penalty = elastic_net(self.cnn.conv.weight, self.l1, self.l2)
        activity = self.cnn.activity
        if activity is not None:
            scale = activity.numel() if self.activity_reduction == "mean" else activity.shape[0]
            penalty = penalty + elastic_net(activity, self.l1, self.l2) / scale
        return penalty


def build_malik_crnn(*, n_features: int, n_outputs: int, **options) -> MalikCRNN:
    """``malik_crnn``: one recurrent branch per output dimension (Figure 1)."""
    return MalikCRNN(n_features, n_outputs, branched=True, **options)


def build_malik_crnn_nb(*, n_features: int, n_outputs: int, **options) -> MalikCRNN:
    """``malik_crnn_nb``: one recurrent branch for all output dimensions (Figure 2)."""
    return MalikCRNN(n_features, n_outputs, branched=False, **options)
