"""musicnn (Pons & Serra, 2019) in PyTorch: the two taggers of the ``musicnn`` 0.1.0 package.

The original is TensorFlow 1 code (``musicnn/models.py``, ``build_musicnn``); this is the same
network, layer for layer, loading the same checkpoints, and ``tests/test_pretrained.py`` shows it
gives the original's outputs (docs/pretrained.md). For a (batch, 187, 96) log-mel patch:

* front end: batch norm of the input, then five conv -> ReLU -> batch norm -> max-over-frequency
  branches: timbral (7 x 38 and 7 x 67 filters, 204 each, over 40 % and 70 % of the 96 bands)
  and temporal (128 x 1, 64 x 1, 32 x 1 filters, 51 each); their 561 channels are concatenated;
* mid end: three 1-D convolutions (64 filters, kernel 7) with ReLU and batch norm, the second and
  third with residual connections; the front end and the three outputs make 753 channels;
* back end: max and mean over time (``max_pool``, ``mean_pool``, 753 each), batch norm, dense 200
  with ReLU and batch norm (``penultimate``), dense 50 and a sigmoid (``taggram``).

Every batch norm runs in inference mode with TensorFlow's epsilon (1e-3). Convolutions pad time
as TensorFlow's 'same' does, and frequency not at all ('valid').

Weights: the checkpoints inside the musicnn 0.1.0 wheel (ISC licence), converted once with
:func:`convert_checkpoint` to ``<cache>/musicnn/<model>.safetensors``. The file keeps
TensorFlow's names and layouts; :func:`load_musicnn` maps them onto the module.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from safetensors.numpy import load_file, save_file
from torch import nn
from torch.nn import functional as F

from merflow.io import atomic_path
from merflow.pretrained.cache import MODELS, weights_path
from merflow.pretrained.tfbundle import CheckpointError, read_checkpoint

SAMPLE_RATE = 16000
N_FFT = 512
HOP_LENGTH = 256
N_MELS = 96
PATCH_FRAMES = 187  # 3 s: librosa.time_to_frames(3, sr=16000, n_fft=512, hop_length=256) + 1
BATCH_NORM_EPSILON = 1e-3  # tf.compat.v1.layers.batch_normalization's default

# musicnn/configuration.py, in the order of the network's outputs.
MTT_TAGS = (
    "guitar", "classical", "slow", "techno", "strings", "drums", "electronic", "rock", "fast",
    "piano", "ambient", "beat", "violin", "vocal", "synth", "female", "indian", "opera", "male",
    "singing", "vocals", "no vocals", "harpsichord", "loud", "quiet", "flute", "woman",
    "male vocal", "no vocal", "pop", "soft", "sitar", "solo", "man", "classic", "choir", "voice",
    "new age", "dance", "male voice", "female vocal", "beats", "harp", "cello", "no voice",
    "weird", "country", "metal", "female voice", "choral",
)  # fmt: skip
MSD_TAGS = (
    "rock", "pop", "alternative", "indie", "electronic", "female vocalists", "dance", "00s",
    "alternative rock", "jazz", "beautiful", "metal", "chillout", "male vocalists",
    "classic rock", "soul", "indie rock", "Mellow", "electronica", "80s", "folk", "90s", "chill",
    "instrumental", "punk", "oldies", "blues", "hard rock", "ambient", "acoustic", "experimental",
    "female vocalist", "guitar", "Hip-Hop", "70s", "party", "country", "easy listening", "sexy",
    "catchy", "funk", "electro", "heavy metal", "Progressive rock", "60s", "rnb", "indie pop",
    "sad", "House", "happy",
)  # fmt: skip
TAGS = {"MSD_musicnn": MSD_TAGS, "MTT_musicnn": MTT_TAGS}
assert tuple(TAGS) == MODELS


# --- input ------------------------------------------------------------------------------------


def logmel(y_16k: np.ndarray) -> np.ndarray:
    """(frames, 96) float32 log-mel spectrogram of mono 16 kHz audio, as musicnn computes it.

    musicnn's ``batch_data`` makes a librosa power mel spectrogram (n_fft 512, hop 256, 96 bands,
    librosa's defaults otherwise) and takes ``log10(10000 x + 1)``, but casts to float16 first,
    which overflows to inf on loud audio: we stay in float32. Resample to 16 kHz beforehand.
    """
    import librosa

    mel = librosa.feature.melspectrogram(
        y=np.asarray(y_16k, dtype=np.float32),
        sr=SAMPLE_RATE,
        n_fft=N_FFT,
        hop_length=HOP_LENGTH,
        n_mels=N_MELS,
        # librosa >= 0.10's default, written out so that it cannot drift; the librosa of 2019
        # padded by reflection, which changes only the first and the last frame.
        pad_mode="constant",
    )
    return np.log10(10000 * mel.T + 1).astype(np.float32)


def logmel_patches(y_16k: np.ndarray, hop_frames: int = PATCH_FRAMES) -> np.ndarray:
    """(patches, 187, 96) float32: the log-mel of ``y_16k`` cut as musicnn's extractor cuts it.

    Patch ``i`` starts at frame ``i * hop_frames``; frames after the last whole patch are dropped.
    The extractor's default is ``hop_frames = 187`` (no overlap); its ``input_overlap`` in seconds
    is in fact this hop, converted by :func:`hop_frames_for`. Audio shorter than one patch (3 s)
    gives no patches (musicnn itself crashes there).
    """
    if hop_frames < 1:
        raise ValueError(f"hop_frames must be a positive number of frames, not {hop_frames}")
    spectrogram = logmel(y_16k)
    starts = range(0, len(spectrogram) - PATCH_FRAMES + 1, hop_frames)
    if not starts:
        return np.zeros((0, PATCH_FRAMES, N_MELS), dtype=np.float32)
    return np.stack([spectrogram[start : start + PATCH_FRAMES] for start in starts])


def hop_frames_for(seconds: float) -> int:
    """The patch hop musicnn's ``extractor(input_overlap=seconds)`` uses, in frames.

    musicnn converts with ``librosa.time_to_frames``, which subtracts half a window:
    1 s gives 61 frames, not 62.5.
    """
    hop = (int(seconds * SAMPLE_RATE) - N_FFT // 2) // HOP_LENGTH
    if hop < 1:
        raise ValueError(f"a patch hop of {seconds} s is less than one frame")
    return hop


# --- the network ------------------------------------------------------------------------------


class MusicnnOutput(NamedTuple):
    """The outputs of one batch, named as musicnn's ``extractor`` names them."""

    taggram: torch.Tensor  # (batch, 50): tag probabilities
    penultimate: torch.Tensor  # (batch, 200)
    mean_pool: torch.Tensor  # (batch, 753)
    max_pool: torch.Tensor  # (batch, 753)


def _batch_norm(kind: type[nn.Module], channels: int) -> nn.Module:
    return kind(channels, eps=BATCH_NORM_EPSILON)


def _tf_same_padding(kernel: int) -> tuple[int, int]:
    """TensorFlow's 'same' padding: an even kernel's extra padded row goes at the end."""
    total = kernel - 1
    return total // 2, total - total // 2


class _FrontEndBranch(nn.Module):
    """Conv (time x frequency) -> ReLU -> batch norm -> max over frequency.

    (batch, 1, time, 96) -> (batch, filters, time). Time is padded as TensorFlow's 'same' (the
    original pads the 7-high timbral filters by 3 by hand, which is the same), frequency is not.
    """

    def __init__(self, filters: int, time: int, frequency: int):
        super().__init__()
        self.time_padding = _tf_same_padding(time)
        self.conv = nn.Conv2d(1, filters, (time, frequency))
        self.norm = _batch_norm(nn.BatchNorm2d, filters)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, (0, 0, *self.time_padding))
        return self.norm(F.relu(self.conv(x))).amax(dim=3)


class _MidEndLayer(nn.Module):
    """Conv over time (kernel 7, 'same') -> ReLU -> batch norm: (batch, in, time) -> (batch, 64,
    time). The original writes it as a 2-D convolution whose kernel spans all input channels."""

    def __init__(self, in_channels: int, filters: int = 64):
        super().__init__()
        self.conv = nn.Conv1d(in_channels, filters, 7, padding=3)
        self.norm = _batch_norm(nn.BatchNorm1d, filters)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(F.relu(self.conv(x)))


class Musicnn(nn.Module):
    """musicnn's ``build_musicnn`` (64 mid-end filters, 200 back-end units) for 96-band patches.

    ``forward`` takes log-mel patches (batch, time, 96), time 187 as trained (other lengths work,
    as in the original), and returns a :class:`MusicnnOutput`. Call ``.eval()`` before use:
    :func:`load_musicnn` does.
    """

    def __init__(self):
        super().__init__()
        front_end_channels = 2 * 204 + 3 * 51  # 561
        pooled_channels = front_end_channels + 3 * 64  # 753, as max_pool and mean_pool
        self.input_norm = _batch_norm(nn.BatchNorm2d, 1)
        self.timbral = nn.ModuleList(
            [_FrontEndBranch(204, 7, int(0.4 * N_MELS)), _FrontEndBranch(204, 7, int(0.7 * N_MELS))]
        )
        self.temporal = nn.ModuleList([_FrontEndBranch(51, time, 1) for time in (128, 64, 32)])
        self.midend = nn.ModuleList(
            [_MidEndLayer(front_end_channels), _MidEndLayer(64), _MidEndLayer(64)]
        )
        self.pool_norm = _batch_norm(nn.BatchNorm1d, 2 * pooled_channels)
        self.dense = nn.Linear(2 * pooled_channels, 200)
        self.dense_norm = _batch_norm(nn.BatchNorm1d, 200)
        self.logits = nn.Linear(200, len(MSD_TAGS))

    def forward(
        self, patches: torch.Tensor, front: list[torch.Tensor] | None = None
    ) -> MusicnnOutput:
        """``front``: the front-end branches' outputs when already known (:func:`predict_at`)."""
        if front is None:
            x = self.input_norm(patches.unsqueeze(1))
            front = [branch(x) for branch in [*self.timbral, *self.temporal]]
        front = torch.cat(front, dim=1)
        cnn1 = self.midend[0](front)
        cnn2 = self.midend[1](cnn1) + cnn1
        cnn3 = self.midend[2](cnn2) + cnn2
        features = torch.cat([front, cnn1, cnn2, cnn3], dim=1)  # (batch, 753, time)
        max_pool, mean_pool = features.amax(dim=2), features.mean(dim=2)
        # The original flattens a (753, 2) [max, mean] array: the two pools interleave.
        pooled = torch.stack([max_pool, mean_pool], dim=2).flatten(1)
        penultimate = self.dense_norm(F.relu(self.dense(self.pool_norm(pooled))))
        taggram = torch.sigmoid(self.logits(penultimate))
        return MusicnnOutput(taggram, penultimate, mean_pool, max_pool)


@torch.inference_mode()
def predict(model: Musicnn, patches: np.ndarray, batch_size: int = 64) -> dict[str, np.ndarray]:
    """The outputs for numpy log-mel ``patches`` (patches, time, 96), computed batch by batch on
    the model's device, as numpy arrays by name: taggram (patches, 50), penultimate, pools."""
    device = next(model.parameters()).device
    batches = torch.from_numpy(np.asarray(patches, dtype=np.float32)).split(batch_size)
    outputs = [model(batch.to(device)) for batch in batches]
    return {
        name: torch.cat([getattr(output, name) for output in outputs]).cpu().numpy()
        for name in MusicnnOutput._fields
    }


@torch.inference_mode()
def predict_at(
    model: Musicnn, spectrogram: np.ndarray, starts: list[int], batch_size: int = 64
) -> dict[str, np.ndarray]:
    """The outputs for the patches ``spectrogram[s : s + 187]`` of each start ``s``, as
    :func:`predict` gives them, with the work of overlapping patches shared.

    A front-end filter ``k`` frames high sees, away from a patch's first and last ``k/2``
    frames, only frames inside the patch: there its output is that of one pass over the whole
    spectrogram (in blocks with the context the filter needs), cut per patch; only the edge
    frames, where a patch alone sees its zero padding, are computed per patch. This pays for
    the filters up to 64 frames high; the 128-frame one runs per patch. Patches every 0.5 s
    cost about half as much this way, with the very same numbers.
    """
    device = next(model.parameters()).device
    whole = torch.from_numpy(np.ascontiguousarray(spectrogram, dtype=np.float32)).to(device)
    normalized = model.input_norm(whole[None, None])
    branches = [*model.timbral, *model.temporal]
    shared = {i: _along_time(b, normalized) for i, b in enumerate(branches) if _worth_sharing(b)}
    outputs = []
    for first in range(0, len(starts), batch_size):
        batch = starts[first : first + batch_size]
        patches = torch.stack([whole[s : s + PATCH_FRAMES] for s in batch])
        x = model.input_norm(patches.unsqueeze(1))
        front = [
            _cut(branch, shared[i], x, batch) if i in shared else branch(x)
            for i, branch in enumerate(branches)
        ]
        outputs.append(model(patches, front=front))
    return {
        name: torch.cat([getattr(output, name) for output in outputs]).cpu().numpy()
        for name in MusicnnOutput._fields
    }


def _worth_sharing(branch: _FrontEndBranch) -> bool:
    """Computing a patch's two edges costs ``2 * (before + after)`` frames: less than a patch?"""
    return 2 * sum(branch.time_padding) < PATCH_FRAMES


def _cut(
    branch: _FrontEndBranch, full: torch.Tensor, x: torch.Tensor, starts: list[int]
) -> torch.Tensor:
    """The branch's output for the patches ``x`` (starting at ``starts`` in the spectrogram
    ``full`` was computed over): the shared middle, the edges computed alone."""
    before, after = branch.time_padding
    span = before + after  # the frames an edge output sees
    cut = torch.stack([full[:, s : s + PATCH_FRAMES] for s in starts])
    if before:
        cut[:, :, :before] = branch(x[:, :, :span])[:, :, :before]
    if after:
        cut[:, :, PATCH_FRAMES - after :] = branch(x[:, :, PATCH_FRAMES - span :])[:, :, -after:]
    return cut


def _along_time(branch: _FrontEndBranch, x: torch.Tensor, block: int = 2048) -> torch.Tensor:
    """``branch`` over a whole (1, 1, time, 96) input, ``block`` frames at a time with the
    context its filters need: the output of one pass, in bounded memory. -> (filters, time)."""
    before, after = branch.time_padding
    time = x.shape[2]
    parts = []
    for start in range(0, time, block):
        end = min(start + block, time)
        low, high = max(start - before, 0), min(end + after, time)
        out = branch(x[:, :, low:high])[0]  # padded by the branch where the input ends
        parts.append(out[:, start - low : start - low + end - start])
    return torch.cat(parts, dim=1)


# --- weights ----------------------------------------------------------------------------------

# The TensorFlow scope of each layer. tf.compat.v1.layers names a layer after its kind, numbered
# in creation order: input norm, timbral 7x38 and 7x67, temporal 128/64/32, mid end, back end.
TF_SCOPES = {
    "input_norm": "batch_normalization",
    "timbral.0.conv": "conv2d",
    "timbral.0.norm": "batch_normalization_1",
    "timbral.1.conv": "conv2d_1",
    "timbral.1.norm": "batch_normalization_2",
    "temporal.0.conv": "conv2d_2",
    "temporal.0.norm": "batch_normalization_3",
    "temporal.1.conv": "conv2d_3",
    "temporal.1.norm": "batch_normalization_4",
    "temporal.2.conv": "conv2d_4",
    "temporal.2.norm": "batch_normalization_5",
    "midend.0.conv": "conv2d_5",
    "midend.0.norm": "batch_normalization_6",
    "midend.1.conv": "conv2d_6",
    "midend.1.norm": "batch_normalization_7",
    "midend.2.conv": "conv2d_7",
    "midend.2.norm": "batch_normalization_8",
    "pool_norm": "batch_normalization_9",
    "dense": "dense",
    "dense_norm": "batch_normalization_10",
    "logits": "dense_1",
}

# Per kind of layer: torch attribute -> (TF variable, einsum from TF axes to torch axes).
# A TF conv kernel is (height, width, in, out), a dense kernel (in, out). The mid end's "2-D"
# kernel is (7, channels, 1, 64): its unit axis u is summed away, which is exact.
_BATCH_NORM_VARIABLES = {
    "weight": ("gamma", "c->c"),
    "bias": ("beta", "c->c"),
    "running_mean": ("moving_mean", "c->c"),
    "running_var": ("moving_variance", "c->c"),
}
_TF_VARIABLES = {
    nn.Conv2d: {"weight": ("kernel", "hwio->oihw"), "bias": ("bias", "o->o")},
    nn.Conv1d: {"weight": ("kernel", "wiuo->oiw"), "bias": ("bias", "o->o")},
    nn.Linear: {"weight": ("kernel", "io->oi"), "bias": ("bias", "o->o")},
    nn.BatchNorm1d: _BATCH_NORM_VARIABLES,
    nn.BatchNorm2d: _BATCH_NORM_VARIABLES,
}


def _variable_map(model: Musicnn) -> list[tuple[str, str, str]]:
    """(torch state-dict name, TF variable name, einsum TF -> torch) for every weight of model."""
    mapping = []
    for module_name, scope in TF_SCOPES.items():
        variables = _TF_VARIABLES[type(model.get_submodule(module_name))]
        for attribute, (variable, equation) in variables.items():
            mapping.append((f"{module_name}.{attribute}", f"{scope}/{variable}", equation))
    return mapping


def _tf_shape(equation: str, torch_shape: torch.Size) -> tuple[int, ...]:
    """The shape a TF variable must have to become a torch tensor of ``torch_shape``."""
    tf_axes, torch_axes = equation.split("->")
    sizes = dict(zip(torch_axes, torch_shape, strict=True))
    return tuple(sizes.get(axis, 1) for axis in tf_axes)


def tf_variable_shapes() -> dict[str, tuple[int, ...]]:
    """The name and shape of every TensorFlow variable a :class:`Musicnn` needs."""
    model = Musicnn()
    state = model.state_dict()
    return {
        tf_name: _tf_shape(equation, state[torch_name].shape)
        for torch_name, tf_name, equation in _variable_map(model)
    }


def load_musicnn(weights: dict[str, np.ndarray], device: str | torch.device = "cpu") -> Musicnn:
    """A :class:`Musicnn` in eval mode holding ``weights`` (TF names and layouts, e.g. from
    :func:`~merflow.pretrained.tfbundle.read_checkpoint`; optimizer slots are ignored)."""
    model = Musicnn()
    state = model.state_dict()
    for torch_name, tf_name, equation in _variable_map(model):
        expected = _tf_shape(equation, state[torch_name].shape)
        if tf_name not in weights:
            raise CheckpointError(
                f"musicnn weights lack {tf_name!r}: they are not a musicnn "
                "(64 mid-end filters, 200 units) checkpoint; convert MSD_musicnn or MTT_musicnn"
            )
        if tuple(weights[tf_name].shape) != expected:
            raise CheckpointError(
                f"musicnn weight {tf_name!r} has shape {tuple(weights[tf_name].shape)}, not "
                f"{expected}: convert MSD_musicnn or MTT_musicnn, not another model"
            )
        converted = np.einsum(equation, weights[tf_name].astype(np.float32))
        state[torch_name] = torch.from_numpy(np.ascontiguousarray(converted))
    model.load_state_dict(state)
    return model.to(device).eval()


def load_cached(model: str, device: str | torch.device = "cpu") -> Musicnn:
    """The ``model`` (MSD_musicnn or MTT_musicnn) from the weight cache, in eval mode."""
    path = weights_path(model)
    if not path.is_file():
        raise CheckpointError(
            f"{path}: no cached {model} weights; run `merflow pretrained fetch musicnn` "
            "(docs/pretrained.md)"
        )
    try:
        weights = load_file(path)
    except Exception as error:  # safetensors raises its own SafetensorError, or OSError
        raise CheckpointError(
            f"{path}: damaged weight file ({error}); run `merflow pretrained fetch musicnn --force`"
        ) from error
    return load_musicnn(weights, device)


def convert_checkpoint(ckpt_prefix: str | os.PathLike, out: str | os.PathLike) -> None:
    """Write the model weights of a musicnn TF checkpoint to ``out`` as safetensors.

    ``ckpt_prefix`` is the checkpoint prefix: the model folder of the unzipped wheel, e.g.
    ``musicnn/MSD_musicnn``. Optimizer state (Adam slots, beta powers) is left out; the weights
    are loaded into a :class:`Musicnn` first, so a wrong checkpoint fails here, not later.
    """
    checkpoint = read_checkpoint(ckpt_prefix)
    model_variables = tf_variable_shapes().keys() & checkpoint.keys()
    weights = {name: checkpoint[name] for name in sorted(model_variables)}
    load_musicnn(weights)
    with atomic_path(out) as tmp:
        save_file(weights, tmp, metadata={"source": f"musicnn 0.1.0 {Path(ckpt_prefix).name}"})
