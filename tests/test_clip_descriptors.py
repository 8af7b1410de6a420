"""The clip-level descriptor features: ``compare_functionals`` (openSMILE's clip functionals)."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from workflow_utils import TINY

from merflow import audio
from merflow.config import validate
from merflow.errors import ConfigError
from merflow.features import compute_clip, extract_shard


def _config(feature: str, features: dict | None = None) -> dict:
    experiment = {"dataset": "tiny", "features": [feature], "models": ["logistic"], "seeds": [0]}
    return {
        "datasets": copy.deepcopy(TINY["datasets"]),
        "features": features or {},
        "experiments": {"mine": experiment},
    }


def clips_table(*paths) -> pd.DataFrame:
    return pd.DataFrame({"clip_id": [p.stem for p in paths], "path": [str(p) for p in paths]})


# --- compare_functionals --------------------------------------------------------------------


@pytest.mark.parametrize(("feature_set", "count"), [("ComParE_2016", 6373), ("eGeMAPSv02", 88)])
def test_functionals_equal_a_direct_opensmile_call_on_the_decoded_clip(
    feature_set, count, shared_data, tmp_path
):
    import opensmile

    source = sorted((shared_data / "4q-sample").rglob("*.mp3"))[0]
    cut = tmp_path / "cut.flac"  # 6 s of a real clip, re-encoded
    sf.write(cut, *_first_seconds(source, 6.0))
    params = {"feature_set": feature_set}
    table, quarantined = extract_shard(clips_table(cut), "compare_functionals", params)
    smile = opensmile.Smile(
        feature_set=opensmile.FeatureSet[feature_set],
        feature_level=opensmile.FeatureLevel.Functionals,
    )
    direct = smile.process_signal(audio.load(cut, 22050), 22050)
    assert quarantined == [] and table.num_columns == 1 + count
    assert table.column_names[1:] == list(direct.columns)
    ours = table.to_pandas().drop(columns="clip_id").to_numpy()
    np.testing.assert_allclose(ours, direct.to_numpy(np.float32), rtol=1e-6)


def _first_seconds(path, seconds: float) -> tuple[np.ndarray, int]:
    data, rate = sf.read(path, frames=int(seconds * sf.info(path).samplerate), dtype="float32")
    return data, rate


def test_a_clip_shorter_than_openSMILE_frames_gives_finite_functionals():
    values = compute_clip("compare_functionals", np.zeros(800, np.float32), {})
    assert values.shape == (1, 6373) and np.isfinite(values).all()


def test_an_unknown_functionals_set_is_refused_naming_the_sets():
    with pytest.raises(ConfigError, match="ComParE_2016, eGeMAPSv02"):
        validate(_config("compare_functionals", {"compare_functionals": {"feature_set": "IS09"}}))
