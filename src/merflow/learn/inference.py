"""Predicting with a trained network: what evaluation, predict and export use, without the
trainer.

:class:`NetworkPredictor` puts a network behind the predictor interface baselines share:
``predict_windows`` (regression on whole songs of any length, chunked and stitched, then
smoothed) and ``predict_proba`` (class probabilities of whole clips, from one centre crop or the
mean over crops); :func:`load_predictor` rebuilds a finished run's predictor from its folder
(several trained states of one network, ``checkpoint_ensemble``, are one
:class:`~merflow.models.network.CheckpointEnsemble`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from merflow import models
from merflow.learn import fitted
from merflow.learn.recipe_pieces import eval_crop_starts, moving_average
from merflow.learn.recipes import TrainConfig
from merflow.learn.sequences import chunk_starts, stitch_song_predictions
from merflow.models.network import Network
from merflow.runs import BASELINE_FILE, BEST_FILE, RETRAIN, damaged, load_checkpoint, read_record

# Prediction keeps no activations for backward, so batches this many times the training batch fit
# in the memory that training needed.
PREDICTION_BATCH_FACTOR = 4


class NetworkPredictor:
    """A trained network behind the predictor interface that baselines share.

    ``predict_windows`` cuts each song into ``seq_len`` chunks (:func:`chunk_starts`), runs them
    in batches of equal length and stitches the outputs back (every window predicted once), then
    smooths each song with a centred moving average of ``smooth_windows`` windows (1: none).
    ``predict_proba`` returns class probabilities of whole clips: the network sees crops of
    ``input_frames`` frames (None: the whole stored matrix), the centre crop of the valid frames
    when ``crop_hop`` is None, else crops every ``crop_hop`` frames whose probabilities are
    averaged (:func:`~merflow.learn.recipe_pieces.eval_crop_starts`).
    """

    def __init__(
        self,
        model: Network,
        device: torch.device,
        seq_len: int | None = None,
        batch_size: int = 32 * PREDICTION_BATCH_FACTOR,
        *,
        input_frames: int | None = None,
        crop_hop: int | None = None,
        smooth_windows: int = 1,
    ):
        self.model, self.device, self.seq_len = model, device, seq_len
        self.batch_size = batch_size
        self.input_frames, self.crop_hop = input_frames, crop_hop
        self.smooth_windows = smooth_windows

    @classmethod
    def for_config(cls, model: Network, device: torch.device, config: TrainConfig):
        """The predictor a run trained with ``config`` validates and is evaluated with."""
        return cls(
            model,
            device,
            config.seq_len,
            config.batch_size * PREDICTION_BATCH_FACTOR,
            input_frames=config.input_frames,
            crop_hop=config.eval_crop_hop,
            smooth_windows=config.smooth_windows,
        )

    @torch.no_grad()
    def predict_windows(self, features: Sequence[np.ndarray]) -> list[np.ndarray]:
        self.model.eval()
        plans = [chunk_starts(len(x), self.seq_len or len(x)) for x in features]
        chunks = [
            (song, start, min(self.seq_len or len(x), len(x)))
            for song, (x, starts) in enumerate(zip(features, plans, strict=True))
            for start in starts
        ]
        outputs: dict[tuple[int, int], np.ndarray] = {}
        for length in sorted({c[2] for c in chunks}):
            same = [c for c in chunks if c[2] == length]
            for i in range(0, len(same), self.batch_size):
                batch = same[i : i + self.batch_size]
                x = np.stack([features[s][start : start + length] for s, start, _ in batch])
                y = self.model(torch.from_numpy(x).to(self.device)).float().cpu().numpy()
                outputs.update({(s, start): y[j] for j, (s, start, _) in enumerate(batch)})
        return [
            moving_average(
                stitch_song_predictions(len(x), starts, [outputs[(song, s)] for s in starts]),
                self.smooth_windows,
            )
            for song, (x, starts) in enumerate(zip(features, plans, strict=True))
        ]

    @torch.no_grad()
    def predict_proba(self, features: np.ndarray, n_valid_frames: np.ndarray) -> np.ndarray:
        self.model.eval()
        if features.ndim == 2:  # one vector a clip: nothing to crop
            batches = torch.from_numpy(np.ascontiguousarray(features)).split(self.batch_size)
            outputs = [self.model(b.to(self.device)).float() for b in batches]
            return torch.softmax(torch.cat(outputs), dim=1).cpu().numpy().astype(np.float32)
        length = self.input_frames or features.shape[2]
        crops = [
            (clip, start)
            for clip, n_valid in enumerate(n_valid_frames)
            for start in eval_crop_starts(n_valid, features.shape[2], length, self.crop_hop)
        ]
        sums = np.zeros((len(features), 0), dtype=np.float64)
        counts = np.zeros(len(features))
        for i in range(0, len(crops), self.batch_size):
            batch = crops[i : i + self.batch_size]
            x = np.stack([features[c, :, s : s + length] for c, s in batch])
            y = self.model(torch.from_numpy(x).to(self.device)).float()
            p = torch.softmax(y, dim=1).cpu().numpy()
            if not sums.shape[1]:
                sums = np.zeros((len(features), p.shape[1]))
            clips = np.array([c for c, _ in batch])
            np.add.at(sums, clips, p)
            np.add.at(counts, clips, 1)
        return (sums / counts[:, None]).astype(np.float32)


def load_predictor(run_dir: str | os.PathLike, device: torch.device | None = None):
    """The trained predictor of a finished run (network from ``best.pt``, or baseline)."""
    run_dir = Path(run_dir)
    config = TrainConfig.from_dict(read_record(run_dir)["config"])
    if models.spec(config.model).baseline:
        return fitted.load(run_dir / BASELINE_FILE)
    device = device or torch.device("cpu")
    model, _ = network_from_checkpoint(run_dir / BEST_FILE, device)
    return NetworkPredictor.for_config(model, device, config)


def network_from_checkpoint(path: Path, device: torch.device) -> tuple[Network, dict]:
    """The network a ``best.pt`` holds, and the checkpoint; weights that do not fit the network
    it names are an error naming the file."""
    checkpoint = load_checkpoint(path, device)
    try:
        model = models.build_from_record(checkpoint["build"]).to(device)
        model.load_state_dict(checkpoint["model"])
    except (KeyError, TypeError, RuntimeError) as exc:
        raise damaged(path, exc, RETRAIN) from None
    return model, checkpoint
