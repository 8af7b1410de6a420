"""Building blocks shared by the models of both papers.

Both papers were built with Keras, so two Keras conventions live here in one place: the default
initialization (:func:`keras_init_`) and the meaning of a regularization coefficient (a *sum* of
absolute or squared weights, :func:`elastic_net`). Everything else is plain PyTorch.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def keras_init_(model: nn.Module) -> nn.Module:
    """Initialize ``model`` in place the way Keras does by default, and return it.

    Why: the papers trained Keras models, and their regularization coefficients (an L1 of 0.1 on
    the sum of |weights|) were tuned for Keras' weight scale, not PyTorch's. Keras draws dense and
    convolution kernels Glorot-uniform with zero biases, recurrent kernels orthogonal per gate, and
    sets an LSTM's forget-gate bias to 1. BatchNorm starts at scale 1, shift 0 in both frameworks.
    """
    for module in model.modules():
        if isinstance(module, nn.Linear | nn.Conv1d | nn.Conv2d):
            nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.GRU | nn.LSTM):
            _keras_init_recurrent(module)
    return model


def _keras_init_recurrent(rnn: nn.GRU | nn.LSTM) -> None:
    n_gates = 4 if isinstance(rnn, nn.LSTM) else 3
    for name, param in rnn.named_parameters():
        if name.startswith("weight_ih"):
            nn.init.xavier_uniform_(param)
        elif name.startswith("weight_hh"):
            for gate in param.data.chunk(n_gates, dim=0):
                nn.init.orthogonal_(gate)
        elif name.startswith("bias"):
            nn.init.zeros_(param)
            if isinstance(rnn, nn.LSTM) and name.startswith("bias_ih"):
                param.data[rnn.hidden_size : 2 * rnn.hidden_size] = 1.0  # gates: i, f, g, o


def elastic_net(tensor: torch.Tensor, l1: float = 0.0, l2: float = 0.0) -> torch.Tensor:
    """``l1 * sum|x| + l2 * sum x^2``: Keras' ``l1_l2`` regularizer (a sum, not a mean).

    Summed in float32 even when ``tensor`` comes from a float16 autocast region, where a sum
    over a large activation map would overflow.
    """
    tensor = tensor.float()
    penalty = tensor.new_zeros(())
    if l1:
        penalty = penalty + l1 * tensor.abs().sum()
    if l2:
        penalty = penalty + l2 * tensor.square().sum()
    return penalty


class Maxout(nn.Module):
    """Maxout units (Goodfellow et al. 2013): each output is the max of ``pieces`` linear maps.

    Applied to the last dimension, so on a ``(B, T, in)`` sequence it is time-distributed with
    weights shared across time steps, as in Malik et al.'s output layer.
    """

    def __init__(self, in_features: int, out_features: int, pieces: int):
        super().__init__()
        self.out_features = out_features
        self.pieces = pieces
        self.linear = nn.Linear(in_features, out_features * pieces)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.linear(x).unflatten(-1, (self.out_features, self.pieces))
        return z.amax(dim=-1)


class SequenceDropout(nn.Module):
    """Dropout with one mask per sequence, shared by all its time steps, on ``(B, T, C)``.

    This is what Keras' ``dropout`` argument of a recurrent layer does to the layer's input: a unit
    dropped for one time step is dropped for the whole sequence, so the recurrence cannot route
    around it.
    """

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = x.new_empty(x.shape[0], 1, x.shape[2]).bernoulli_(1.0 - self.p)
        return x * keep / (1.0 - self.p)


def last_states(h_n: torch.Tensor, bidirectional: bool) -> torch.Tensor:
    """The final hidden state of the top recurrent layer, ``(B, H)`` or ``(B, 2H)`` if
    bidirectional: Keras' ``return_sequences=False`` (the backward half has read the whole
    sequence, ending at its first step), with forward and backward concatenated."""
    if bidirectional:
        return torch.cat([h_n[-2], h_n[-1]], dim=-1)
    return h_n[-1]


class Conv1dBlock(nn.Module):
    """Conv1D over time (mel bands as channels) -> ReLU -> BatchNorm -> MaxPool1D -> dropout.

    The order ReLU before BatchNorm is Velankar et al.'s text (Section III.C).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        pool_size: int,
        padding: str,
        dropout: float,
    ):
        super().__init__()
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, padding=padding)
        self.norm = nn.BatchNorm1d(out_channels)
        self.pool = nn.MaxPool1d(pool_size)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.pool(self.norm(F.relu(self.conv(x)))))


class Conv2dBlock(nn.Module):
    """Conv2D ('valid') -> ReLU -> MaxPool2D, on ``(B, C, time, freq)``."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: tuple[int, int],
        pool_size: tuple[int, int],
    ):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size)
        self.pool = nn.MaxPool2d(pool_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # ReLU and max-pooling commute exactly (values and gradients), so pooling first gives
        # the block's result with the ReLU on a fraction of the values.
        return F.relu(self.pool(self.conv(x)))


def conv_output_size(size: int, kernel: int, padding: str) -> int:
    """Length of an axis after a stride-1 convolution with 'valid' or 'same' padding."""
    return size if padding == "same" else size - kernel + 1


def fit_pool(size: int, pool: int) -> int:
    """The pool to use on an axis of ``size``: the paper's ``pool``, but never larger than the
    axis, so that an input smaller than the paper's keeps at least one step (instead of none)."""
    return max(1, min(pool, size))
