"""Velankar et al.: CRNN and Parallel CNN-RNN, emotion classes of 30 s clips from log-mel frames.

Input ``(B, n_mels, n_frames)`` (128 x 640 in the paper: n_fft 2048, hop 512); output logits
``(B, n_classes)``. The softmax of the paper's last layer lives in the loss (cross-entropy) and in
prediction, not in the model.

Both architectures descend, layer for layer, from a public Keras music-genre project (FMA-small,
8 genres, 640 x 128 log-mel input; github.com/priya-dwivedi/Music_Genre_Classification), which
fills in what the paper leaves open. That ancestry also explains the paper's "8 hidden units in
order to determine the probabilities of the three classes": 8 was the number of genres. A softmax
over 8 units cannot give 3 class probabilities, so the output layer here has one unit per class.

Decisions (keyword options; declared, with defaults and allowed values, in
:data:`merflow.models.options.VELANKAR_CRNN` and :data:`~merflow.models.options.VELANKAR_PARALLEL`):

* No input BatchNorm: the log-mel frames arrive z-scored with training-split statistics (stored
  with the model by the training stage); neither paper nor ancestor normalizes inside the model.
* CRNN: 'valid' convolutions and max-pooling by 2 over time (ancestor); the block order
  Conv -> ReLU -> BatchNorm -> MaxPool is the paper's text. Dropout 0.4 after every pooling, after
  the LSTM and after the 64-unit dense layer, and L2 0.001 (Keras: ``l2 * sum w^2``) on the
  convolution kernels and the 64-unit dense kernel: the paper's "L2 and dropout between all the
  layers" as the ancestor set them. The 64-unit layer is linear in the ancestor
  (``hidden_activation="linear"``; ``"relu"`` is offered). The LSTM summarizes the sequence by its
  last hidden state (Keras ``return_sequences=False``; ``lstm_output="mean"`` averages over time).
* Parallel: kernel (3, 1) = 3 frames x 1 mel band, 'valid', pools (2, 2), (2, 2), (2, 2),
  (4, 4), (4, 4) over (time, mel). On 640 x 128 that leaves 64 maps x 4 x 1 = 256 values, the
  paper's "tensor having shape 256" ('same' padding would leave 320). The flattened size is
  computed when the model is built, for the input size it is built for; on smaller inputs a pool
  never exceeds the axis it pools (it shrinks to the axis length, see
  :func:`~merflow.models.blocks.fit_pool`), so e.g. 64 x 160 gives 64 x 1 x 1. The recurrent
  branch max-pools (4, 2) (160 steps x 64 bands on the paper's input) before a bidirectional GRU
  of 64 units whose last states give 128 values. The paper describes no regularization for this
  model and the ancestor has none: ``dropout`` (on the 384 concatenated values) and ``l2`` (conv
  and output kernels) default to 0 and are there to be tuned.

Parameter counts (trainable, 128 x 640, 3 classes): velankar_crnn 133,243; velankar_parallel
83,619. PyTorch recurrent layers carry two bias vectors where Keras has one, so Keras reports
384 (LSTM) and 2 x 192 (GRU) fewer, plus BatchNorm's moving statistics as non-trainable.
"""

from __future__ import annotations

import torch
from torch import nn

from merflow.errors import ConfigError
from merflow.models.blocks import (
    Conv1dBlock,
    Conv2dBlock,
    conv_output_size,
    elastic_net,
    fit_pool,
    keras_init_,
    last_states,
)
from merflow.models.network import Network


class VelankarCRNN(Network):
    """Conv1D blocks over time -> LSTM -> dense -> class logits (the paper's Figure 3)."""

    def __init__(
        self,
        n_mels: int,
        n_classes: int,
        n_frames: int,
        *,
        filters: int = 56,
        kernel_size: int = 5,
        n_blocks: int = 3,
        pool_size: int = 2,
        padding: str = "valid",
        lstm_units: int = 96,
        lstm_output: str = "last",
        hidden_units: int = 64,
        hidden_activation: str = "linear",
        dropout: float = 0.4,
        l2: float = 0.001,
        init: str = "keras",
    ):
        super().__init__()
        _check_crnn_fits(n_frames, n_blocks, kernel_size, pool_size, padding)
        self.input_shape = (n_mels, n_frames)
        self.l2 = float(l2)
        self.lstm_output = lstm_output

        self.blocks = nn.Sequential(
            *(
                Conv1dBlock(
                    n_mels if i == 0 else filters, filters, kernel_size, pool_size, padding, dropout
                )
                for i in range(n_blocks)
            )
        )
        self.lstm = nn.LSTM(filters, lstm_units, batch_first=True)
        self.lstm_dropout = nn.Dropout(dropout)
        self.hidden = nn.Linear(lstm_units, hidden_units)
        self.hidden_activation = nn.ReLU() if hidden_activation == "relu" else nn.Identity()
        self.hidden_dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden_units, n_classes)
        if init == "keras":
            keras_init_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, n_mels, n_frames)`` -> logits ``(B, n_classes)``."""
        _check_input(x, self.input_shape)
        sequence = self.blocks(x).transpose(1, 2)  # (B, steps, filters)
        outputs, (h_n, _) = self.lstm(sequence)
        summary = last_states(h_n, False) if self.lstm_output == "last" else outputs.mean(1)
        hidden = self.hidden_activation(self.hidden(self.lstm_dropout(summary)))
        return self.classifier(self.hidden_dropout(hidden))

    def penalty(self) -> torch.Tensor:
        """L2 on the convolution kernels and the hidden dense kernel (Keras: a sum of squares)."""
        kernels = [block.conv.weight for block in self.blocks] + [self.hidden.weight]
        return _l2(kernels, self.l2)


class VelankarParallel(Network):
    """A 2D CNN branch and a recurrent branch side by side -> dense -> logits (Figure 4)."""

    def __init__(
        self,
        n_mels: int,
        n_classes: int,
        n_frames: int,
        *,
        filters: tuple[int, ...] = (16, 32, 64, 64, 64),
        kernel_size: tuple[int, int] = (3, 1),
        pool_sizes: tuple[tuple[int, int], ...] = ((2, 2), (2, 2), (2, 2), (4, 4), (4, 4)),
        rnn_pool: tuple[int, int] = (4, 2),
        gru_units: int = 64,
        dropout: float = 0.0,
        l2: float = 0.0,
        init: str = "keras",
    ):
        super().__init__()
        filters, kernel_size, rnn_pool = tuple(filters), tuple(kernel_size), tuple(rnn_pool)
        pool_sizes = tuple(tuple(p) for p in pool_sizes)  # YAML and JSON give lists
        if len(pool_sizes) != len(filters):
            raise ConfigError(
                f"model options filters and pool_sizes need one entry per block; got "
                f"{len(filters)} filters and {len(pool_sizes)} pool sizes"
            )
        self.input_shape = (n_mels, n_frames)
        self.l2 = float(l2)

        self.cnn, self.cnn_size = _cnn_branch(filters, kernel_size, pool_sizes, n_frames, n_mels)
        fitted_rnn_pool = (fit_pool(n_frames, rnn_pool[0]), fit_pool(n_mels, rnn_pool[1]))
        self.rnn_pool = nn.MaxPool2d(fitted_rnn_pool)
        self.gru = nn.GRU(
            n_mels // fitted_rnn_pool[1], gru_units, batch_first=True, bidirectional=True
        )
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(self.cnn_size + 2 * gru_units, n_classes)
        if init == "keras":
            keras_init_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, n_mels, n_frames)`` -> logits ``(B, n_classes)``."""
        _check_input(x, self.input_shape)
        # (B, 1, time, mel), the paper's orientation. Channels-last memory lets the convolutions
        # and pools run on vectors of channels: about twice as fast on a CPU (bench/training.py).
        image = x.transpose(1, 2).unsqueeze(1).contiguous(memory_format=torch.channels_last)
        cnn_features = self.cnn(image).flatten(1)  # (B, 256)
        _, h_n = self.gru(self.rnn_pool(image).squeeze(1))  # GRU over pooled time steps
        rnn_features = last_states(h_n, True)  # (B, 128)
        return self.classifier(self.dropout(torch.cat([cnn_features, rnn_features], dim=1)))

    def penalty(self) -> torch.Tensor:
        """L2 on the convolution kernels and the output kernel; 0 with the default ``l2=0``."""
        kernels = [block.conv.weight for block in self.cnn] + [self.classifier.weight]
        return _l2(kernels, self.l2)


def build_velankar_crnn(
    *, n_features: int, n_outputs: int, n_frames: int | None = None, **options
) -> VelankarCRNN:
    """``velankar_crnn``: ``n_features`` mel bands, ``n_outputs`` classes, ``n_frames``."""
    return VelankarCRNN(
        n_features, n_outputs, _require_frames("velankar_crnn", n_frames), **options
    )


def build_velankar_parallel(
    *, n_features: int, n_outputs: int, n_frames: int | None = None, **options
) -> VelankarParallel:
    """``velankar_parallel``: ``n_features`` mel bands, ``n_outputs`` classes, ``n_frames``."""
    return VelankarParallel(
        n_features, n_outputs, _require_frames("velankar_parallel", n_frames), **options
    )


def _require_frames(name: str, n_frames: int | None) -> int:
    if n_frames is None:
        raise ConfigError(
            f"model {name} needs n_frames (the frame count of the logmel feature table, its "
            f"metadata 'shape'); it sizes the layers after the convolutions"
        )
    return n_frames


def _check_input(x: torch.Tensor, expected: tuple[int, int]) -> None:
    if x.dim() != 3 or tuple(x.shape[1:]) != expected:
        raise ConfigError(
            f"model built for inputs (batch, {expected[0]} mels, {expected[1]} frames) got "
            f"{tuple(x.shape)}; build it with n_features/n_frames of the feature table it reads"
        )


def _cnn_branch(
    filters: tuple[int, ...],
    kernel_size: tuple[int, int],
    pool_sizes: tuple[tuple[int, int], ...],
    n_frames: int,
    n_mels: int,
) -> tuple[nn.Sequential, int]:
    """The parallel model's Conv2D blocks over (time, mel), and the size of their flattened
    output (256 on 640 x 128), pools shrunk to fit inputs smaller than the paper's."""
    blocks, size = [], (n_frames, n_mels)
    for i, (n_out, pool) in enumerate(zip(filters, pool_sizes, strict=True)):
        conv_size = _valid_conv_size(size, kernel_size, block=i + 1, n_frames=n_frames)
        fitted = (fit_pool(conv_size[0], pool[0]), fit_pool(conv_size[1], pool[1]))
        blocks.append(Conv2dBlock(1 if i == 0 else filters[i - 1], n_out, kernel_size, fitted))
        size = (conv_size[0] // fitted[0], conv_size[1] // fitted[1])
    return nn.Sequential(*blocks), filters[-1] * size[0] * size[1]


def _check_crnn_fits(n_frames: int, n_blocks: int, kernel: int, pool: int, padding: str) -> None:
    steps = n_frames
    for block in range(1, n_blocks + 1):
        steps = conv_output_size(steps, kernel, padding) // pool
        if steps < 1:
            raise ConfigError(
                f"velankar_crnn: {n_frames} frames are too few for {n_blocks} blocks of kernel "
                f"{kernel} and pool {pool} (nothing left after block {block}); use more frames, "
                f"padding='same' or a smaller pool_size"
            )


def _valid_conv_size(
    size: tuple[int, int], kernel: tuple[int, int], *, block: int, n_frames: int
) -> tuple[int, int]:
    out = (size[0] - kernel[0] + 1, size[1] - kernel[1] + 1)
    if min(out) < 1:
        raise ConfigError(
            f"velankar_parallel: an input of {n_frames} frames is too short for convolution "
            f"block {block} (its input is {size[0]} x {size[1]}, the kernel {kernel[0]} x "
            f"{kernel[1]}); use more frames or smaller pool_sizes"
        )
    return out


def _l2(kernels: list[torch.Tensor], l2: float) -> torch.Tensor:
    return torch.stack([elastic_net(kernel, l2=l2) for kernel in kernels]).sum()
