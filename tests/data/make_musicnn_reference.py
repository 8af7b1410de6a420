"""Remake tests/data/musicnn_reference.npz: what the original musicnn 0.1.0 (TensorFlow) outputs.

The input is the log-mel spectrogram of a synthetic 9 s signal (seeded numpy: a melody with
harmonics, noise bursts, a noise floor, and a loud, clipped last third), computed as musicnn's
``extractor.batch_data`` does but in float32, cut into its three 187-frame patches. Both musicnn
models (MSD_musicnn, MTT_musicnn) run on them as ``extractor.extractor`` runs them, minus the
float16 cast and the per-call graph rebuild: the npz holds the input and, per model, the taggram
(sigmoid of the logits), penultimate, mean_pool and max_pool for each patch.

TensorFlow never enters the project's .venv. Run this in a scratch environment (Python 3.11):

    python3.11 -m venv ~/scratch/tfenv
    ~/scratch/tfenv/bin/pip install tensorflow-cpu==2.21.0 tf-keras==2.21.0 librosa==0.11.0
    ~/scratch/tfenv/bin/pip install --no-deps musicnn==0.1.0
    TF_USE_LEGACY_KERAS=1 ~/scratch/tfenv/bin/python tests/data/make_musicnn_reference.py

(musicnn pins numpy < 1.17, hence ``--no-deps``; Keras 3 lacks the ``tf.compat.v1.layers`` it
uses, hence tf-keras and ``TF_USE_LEGACY_KERAS=1``.) tests/test_pretrained.py imports
:func:`synthetic_signal` from here, so that function must stay pure numpy.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

SAMPLE_RATE = 16000
DURATION_S = 9.0  # 563 frames: exactly three 187-frame patches
PATCH_FRAMES = 187
MODELS = ("MSD_musicnn", "MTT_musicnn")
OUTPUTS = ("taggram", "penultimate", "mean_pool", "max_pool")
OUT = Path(__file__).with_name("musicnn_reference.npz")


def synthetic_signal(seed: int = 20190801) -> np.ndarray:
    """9 s of float32 audio at 16 kHz in [-1, 1], its last third loud enough (peaks clipped at 1)
    that musicnn's float16 cast would overflow to inf on it."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(DURATION_S * SAMPLE_RATE)) / SAMPLE_RATE
    notes = 110.0 * 2 ** (rng.integers(0, 36, size=36) / 12)  # one note every 0.25 s
    f0 = np.repeat(notes, len(t) // len(notes))
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
    melody = sum(np.sin(k * phase) / k for k in range(1, 8))
    beat = np.exp(-30 * (t % 0.5)) * rng.standard_normal(len(t))  # a noise burst every 0.5 s
    floor = 0.01 * rng.standard_normal(len(t))
    gain = np.where(t < 2 * DURATION_S / 3, 0.1, 0.9)
    return np.clip(gain * (melody / 2 + beat) + floor, -1, 1).astype(np.float32)


def musicnn_logmel(y: np.ndarray) -> np.ndarray:
    """musicnn 0.1.0's ``batch_data`` spectrogram, (frames, 96), computed in float32."""
    import librosa

    mel = librosa.feature.melspectrogram(
        y=y, sr=SAMPLE_RATE, hop_length=256, n_fft=512, n_mels=96
    ).T
    return np.log10(10000 * mel + 1)


def run_musicnn(model: str, patches: np.ndarray) -> dict[str, np.ndarray]:
    """The original graph (``models.define_model``) with the packaged checkpoint, on ``patches``."""
    import musicnn
    import tensorflow as tf
    from musicnn import models

    tf.compat.v1.disable_eager_execution()
    tf.compat.v1.reset_default_graph()
    with tf.name_scope("model"):
        x = tf.compat.v1.placeholder(tf.float32, [None, PATCH_FRAMES, 96])
        is_training = tf.compat.v1.placeholder(tf.bool)
        logits, *_, mean_pool, max_pool, penultimate = models.define_model(
            x, is_training, model, num_classes=50
        )
        taggram = tf.nn.sigmoid(logits)
    with tf.compat.v1.Session() as session:
        checkpoint = os.path.join(os.path.dirname(musicnn.__file__), model, "")
        tf.compat.v1.train.Saver().restore(session, checkpoint)
        fetched = session.run(
            [taggram, penultimate, mean_pool, max_pool],
            feed_dict={x: patches, is_training: False},
        )
    return dict(zip(OUTPUTS, fetched, strict=True))


def main() -> None:
    import librosa
    import tensorflow as tf

    logmel = musicnn_logmel(synthetic_signal())
    patches = np.stack(
        [logmel[i : i + PATCH_FRAMES] for i in range(0, 3 * PATCH_FRAMES, PATCH_FRAMES)]
    )
    arrays = {"logmel": patches.astype(np.float32)}
    for model in MODELS:
        for name, value in run_musicnn(model, patches).items():
            arrays[f"{model}.{name}"] = value.astype(np.float32)
    arrays["versions"] = np.array(
        [f"tensorflow {tf.__version__}", f"librosa {librosa.__version__}", "musicnn 0.1.0"]
    )
    np.savez_compressed(OUT, **arrays)
    print(f"wrote {OUT} ({OUT.stat().st_size // 1024} kB)")


if __name__ == "__main__":
    main()
