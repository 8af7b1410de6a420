"""merflow.pretrained: the TensorFlow checkpoint reader and the musicnn port (docs/pretrained.md).

The reader is tested on tensor bundles written here by hand (a small LevelDB-table writer below);
the port against the outputs of the original TensorFlow musicnn (tests/data/musicnn_reference.npz,
made by tests/data/make_musicnn_reference.py). That comparison needs the converted weights in the
merflow cache (`merflow pretrained fetch musicnn`): it is skipped without them, except in CI.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

from merflow.pretrained import musicnn
from merflow.pretrained.cache import cached_card, weights_path
from merflow.pretrained.tfbundle import (
    TABLE_MAGIC,
    CheckpointError,
    crc32c,
    mask_crc,
    read_checkpoint,
    unmask_crc,
)

DATA = Path(__file__).parent / "data"
REFERENCE = DATA / "musicnn_reference.npz"
MAX_RELATIVE_ERROR = 1e-4

# --- a tiny tensor-bundle writer ----------------------------------------------------------------

DTYPE_CODES = {np.dtype("float32"): 1, np.dtype("int64"): 9, np.dtype("float16"): 19}


def _varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(number: int, value: int | bytes) -> bytes:
    """A protobuf field: an int as a varint, bytes length-delimited."""
    if isinstance(value, bytes):
        return _varint(number << 3 | 2) + _varint(len(value)) + value
    return _varint(number << 3) + _varint(value)


def _block(records: list[tuple[bytes, bytes]], restart_interval: int) -> bytes:
    """A LevelDB block: prefix-compressed records, a full key every ``restart_interval``."""
    out, restarts, previous = bytearray(), [], b""
    for i, (key, value) in enumerate(records):
        if i % restart_interval == 0:
            restarts.append(len(out))
            shared = 0
        else:
            shared = len(os.path.commonprefix([previous, key]))
        out += _varint(shared) + _varint(len(key) - shared) + _varint(len(value))
        out += key[shared:] + value
        previous = key
    restarts = restarts or [0]
    return bytes(out) + b"".join(r.to_bytes(4, "little") for r in [*restarts, len(restarts)])


def _table(records: list[tuple[bytes, bytes]], per_block: int, compression: int) -> bytes:
    """A LevelDB table: data blocks of ``per_block`` records (full keys every 2), an empty
    metaindex block, the index block, the footer."""
    table = bytearray()

    def append(contents: bytes) -> bytes:
        handle = _varint(len(table)) + _varint(len(contents))
        trailer_type = bytes([compression])
        crc = mask_crc(crc32c(contents + trailer_type))
        table.extend(contents + trailer_type + crc.to_bytes(4, "little"))
        return handle

    index = []  # (last key of the block, its handle): a valid separator for the block
    for start in range(0, len(records), per_block):
        chunk = records[start : start + per_block]
        index.append((chunk[-1][0], append(_block(chunk, restart_interval=2))))
    metaindex_handle = append(_block([], restart_interval=1))
    index_handle = append(_block(index, restart_interval=1))
    footer = (metaindex_handle + index_handle).ljust(40, b"\0") + TABLE_MAGIC.to_bytes(8, "little")
    return bytes(table + footer)


def write_bundle(
    prefix: str, tensors: dict[str, np.ndarray], per_block: int = 4, compression: int = 0
) -> None:
    """Write ``tensors`` as TensorFlow does: ``prefix.index`` and ``prefix.data-00000-of-00001``."""
    data = bytearray()
    records = [(b"", _field(1, 1))]  # BundleHeaderProto: num_shards = 1
    for name in sorted(tensors):
        raw = np.ascontiguousarray(tensors[name]).tobytes()
        shape = b"".join(_field(2, _field(1, size)) for size in tensors[name].shape)
        crc = _varint(6 << 3 | 5) + mask_crc(crc32c(raw)).to_bytes(4, "little")
        entry = _field(1, DTYPE_CODES[tensors[name].dtype]) + _field(2, shape)
        entry += _field(4, len(data)) + _field(5, len(raw)) + crc
        records.append((name.encode(), entry))
        data += raw
    Path(prefix + ".index").write_bytes(_table(records, per_block, compression))
    Path(prefix + ".data-00000-of-00001").write_bytes(bytes(data))


def _tensors() -> dict[str, np.ndarray]:
    """Names sharing prefixes (so keys are prefix-compressed), shapes from scalar to 4-D."""
    rng = np.random.default_rng(0)
    return {
        "conv2d/bias": rng.standard_normal(3).astype(np.float32),
        "conv2d/kernel": rng.standard_normal((2, 1, 3, 4)).astype(np.float32),
        "conv2d_1/bias": rng.standard_normal(5).astype(np.float32),
        "conv2d_1/kernel": rng.standard_normal((7, 5)).astype(np.float32),
        "dense/bias": np.float32(rng.standard_normal()).reshape(()),
        "dense/kernel": rng.standard_normal((6, 2)).astype(np.float32),
        "global_step": np.array(1234, dtype=np.int64),
    }


# --- the reader -------------------------------------------------------------------------------


def _bitwise_crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def test_crc32c_matches_the_standard():
    assert crc32c(b"123456789") == 0xE3069283  # the check value of CRC-32C
    rng = np.random.default_rng(1)
    for length in (0, 1, 1000, 16 * 1024 - 1, 16 * 1024, 20_011):  # both sides of the lane path
        data = rng.integers(0, 256, length, dtype=np.uint8).tobytes()
        assert crc32c(data) == _bitwise_crc32c(data), length
    assert unmask_crc(mask_crc(0xE3069283)) == 0xE3069283


@pytest.mark.parametrize("per_block", [4, 100], ids=["several-blocks", "one-block"])
def test_reads_a_bundle_written_by_hand(tmp_path, per_block):
    # 8 records (header + 7 tensors): 4 per block gives two blocks of two restart points each.
    tensors = _tensors()
    write_bundle(str(tmp_path / "model.ckpt"), tensors, per_block=per_block)
    read = read_checkpoint(tmp_path / "model.ckpt")
    assert read.keys() == tensors.keys()
    for name, tensor in tensors.items():
        assert read[name].dtype == tensor.dtype
        np.testing.assert_array_equal(read[name], tensor, err_msg=name)


def test_an_empty_prefix_is_the_folder(tmp_path):
    """musicnn's checkpoints are ``<model folder>/.index``: the folder is the prefix."""
    write_bundle(str(tmp_path) + "/", _tensors())
    assert (tmp_path / ".index").is_file()
    assert read_checkpoint(tmp_path).keys() == _tensors().keys()


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(CheckpointError, match=r"nothing\.index: file not found"):
        read_checkpoint(tmp_path / "nothing")
    write_bundle(str(tmp_path / "model"), _tensors())
    (tmp_path / "model.data-00000-of-00001").unlink()
    with pytest.raises(CheckpointError, match=r"model\.data-00000-of-00001: file not found"):
        read_checkpoint(tmp_path / "model")


def _damage(path: Path, position: int) -> None:
    data = bytearray(path.read_bytes())
    data[position] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("file", "position", "message"),
    [
        (".index", -1, r"model\.index: the table footer lacks the LevelDB magic number"),
        (".index", 3, r"model\.index: block at offset 0 fails its CRC-32C check"),
        (".data-00000-of-00001", -1, r"tensor 'global_step' fails its CRC-32C check"),
    ],
    ids=["footer", "index-block", "tensor"],
)
def test_damage_is_caught_and_named(tmp_path, file, position, message):
    write_bundle(str(tmp_path / "model"), _tensors())
    _damage(tmp_path / f"model{file}", position)
    with pytest.raises(CheckpointError, match=message):
        read_checkpoint(tmp_path / "model")


def test_a_truncated_index_is_caught(tmp_path):
    (tmp_path / "model.index").write_bytes(b"\0" * 20)
    with pytest.raises(CheckpointError, match="shorter than the 48-byte table footer"):
        read_checkpoint(tmp_path / "model")


def test_compressed_blocks_are_refused_clearly(tmp_path):
    write_bundle(str(tmp_path / "model"), _tensors(), compression=1)
    with pytest.raises(CheckpointError, match=r"compressed \(type 1, 1 = snappy\).*re-save"):
        read_checkpoint(tmp_path / "model")


def test_an_unsupported_dtype_names_the_tensor(tmp_path):
    write_bundle(str(tmp_path / "model"), {"half": np.zeros(3, np.float16)})
    with pytest.raises(CheckpointError, match="tensor 'half' has TensorFlow dtype 19"):
        read_checkpoint(tmp_path / "model")


# --- the port, with random weights ----------------------------------------------------------


def _random_tf_weights(seed: int = 0) -> dict[str, np.ndarray]:
    """Weights of the original's names and layouts, plus the optimizer state a checkpoint has."""
    rng = np.random.default_rng(seed)
    weights = {}
    for name, shape in musicnn.tf_variable_shapes().items():
        weights[name] = rng.standard_normal(shape).astype(np.float32)
        if name.endswith("kernel"):  # keep activations in range: scale by 1/sqrt(fan-in)
            weights[name] /= np.sqrt(np.prod(shape[:-1]))
        elif name.endswith("moving_variance"):
            weights[name] = np.abs(weights[name]) + 0.5
    optimizer = {f"{name}/Adam": np.zeros_like(w) for name, w in weights.items()}
    return weights | optimizer | {"beta1_power": np.array(0.9, np.float32)}


def test_output_shapes_with_random_weights():
    model = musicnn.load_musicnn(_random_tf_weights())
    patches = np.random.default_rng(2).random((5, musicnn.PATCH_FRAMES, 96), dtype=np.float32)
    outputs = musicnn.predict(model, patches, batch_size=2)
    expected = {"taggram": 50, "penultimate": 200, "mean_pool": 753, "max_pool": 753}
    assert {name: value.shape for name, value in outputs.items()} == {
        name: (5, size) for name, size in expected.items()
    }
    assert ((outputs["taggram"] > 0) & (outputs["taggram"] < 1)).all()
    assert musicnn.predict(model, patches[:0])["taggram"].shape == (0, 50)
    # Like the original, other patch lengths work too.
    assert model(torch.from_numpy(patches[:, :100])).max_pool.shape == (5, 753)


def test_tf_layouts_land_on_the_right_axes():
    weights = _random_tf_weights()
    model = musicnn.load_musicnn(weights)
    timbral = model.timbral[1].conv.weight.detach().numpy()  # (out, 1, height, width)
    np.testing.assert_array_equal(timbral[5, 0, 2, 40], weights["conv2d_1/kernel"][2, 40, 0, 5])
    midend = model.midend[0].conv.weight.detach().numpy()  # (out, channels, time)
    np.testing.assert_array_equal(midend[7, 300, 4], weights["conv2d_5/kernel"][4, 300, 0, 7])
    np.testing.assert_array_equal(model.dense.weight.detach().numpy(), weights["dense/kernel"].T)
    np.testing.assert_array_equal(
        model.dense_norm.running_var.numpy(), weights["batch_normalization_10/moving_variance"]
    )


def test_every_weight_comes_from_the_checkpoint():
    mapped = {name for name, _, _ in musicnn._variable_map(musicnn.Musicnn())}
    state = musicnn.Musicnn().state_dict()
    assert mapped == {name for name in state if not name.endswith("num_batches_tracked")}


def test_missing_or_misshapen_weights_are_named():
    weights = _random_tf_weights()
    del weights["conv2d_3/kernel"]
    with pytest.raises(CheckpointError, match="lack 'conv2d_3/kernel'"):
        musicnn.load_musicnn(weights)
    weights = _random_tf_weights() | {"dense/bias": np.zeros(100, np.float32)}
    with pytest.raises(CheckpointError, match=r"'dense/bias' has shape \(100,\), not \(200,\)"):
        musicnn.load_musicnn(weights)


def test_convert_checkpoint_keeps_the_model_and_feeds_the_cache(tmp_path, monkeypatch):
    weights = _random_tf_weights()
    (tmp_path / "MTT_musicnn").mkdir()
    write_bundle(str(tmp_path / "MTT_musicnn") + "/", weights, per_block=16)
    monkeypatch.setenv("MERFLOW_CACHE", str(tmp_path / "cache"))
    out = weights_path("MTT_musicnn")
    assert out == tmp_path / "cache" / "musicnn" / "MTT_musicnn.safetensors"
    musicnn.convert_checkpoint(tmp_path / "MTT_musicnn", out)
    assert load_file(out).keys() == musicnn.tf_variable_shapes().keys()  # no optimizer state
    patches = np.random.default_rng(3).random((2, musicnn.PATCH_FRAMES, 96), dtype=np.float32)
    cached = musicnn.predict(musicnn.load_cached("MTT_musicnn"), patches)
    direct = musicnn.predict(musicnn.load_musicnn(weights), patches)
    for name in direct:
        np.testing.assert_array_equal(cached[name], direct[name])


def test_load_cached_says_how_to_make_the_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("MERFLOW_CACHE", str(tmp_path))
    with pytest.raises(CheckpointError, match="merflow pretrained fetch musicnn"):
        musicnn.load_cached("MSD_musicnn")


def test_a_damaged_cache_says_fetch_again(tmp_path, monkeypatch):
    monkeypatch.setenv("MERFLOW_CACHE", str(tmp_path))
    path = weights_path("MSD_musicnn")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(CheckpointError, match=r"MSD_musicnn.safetensors: damaged.*--force"):
        musicnn.load_cached("MSD_musicnn")
    (path.parent / "card.json").write_text("{cut sh")
    assert cached_card() == {}  # so the next fetch converts again


def test_the_cache_path_needs_no_torch():
    """The Snakefile asks for weight paths while it parses: that must not import torch."""
    code = "import sys, merflow.pretrained.cache as f; f.weights_path('MTT_musicnn'); "
    code += "assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_gives_the_cpu_outputs():
    weights = _random_tf_weights()
    patches = np.random.default_rng(4).random((3, musicnn.PATCH_FRAMES, 96), dtype=np.float32)
    on_cpu = musicnn.predict(musicnn.load_musicnn(weights), patches)
    on_gpu = musicnn.predict(musicnn.load_musicnn(weights, device="cuda"), patches)
    for name in on_cpu:
        np.testing.assert_allclose(on_gpu[name], on_cpu[name], rtol=1e-3, atol=1e-3)


# --- the input pipeline -----------------------------------------------------------------------


def _reference_script():
    spec = importlib.util.spec_from_file_location(
        "make_reference", DATA / "make_musicnn_reference.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_logmel_patches_match_the_reference_input():
    patches = musicnn.logmel_patches(_reference_script().synthetic_signal())
    reference = np.load(REFERENCE)["logmel"]
    assert patches.dtype == np.float32
    np.testing.assert_allclose(patches, reference, rtol=1e-5, atol=1e-5)


def test_patches_follow_musicnn_hops():
    y = np.random.default_rng(5).standard_normal(10 * musicnn.SAMPLE_RATE).astype(np.float32)
    spectrogram = musicnn.logmel(y)  # 626 frames
    hop = musicnn.hop_frames_for(1.0)  # extractor(input_overlap=1) steps 61 frames
    patches = musicnn.logmel_patches(y, hop_frames=hop)
    assert hop == 61
    assert patches.shape == (len(range(0, 626 - 187 + 1, 61)), 187, 96)
    np.testing.assert_array_equal(patches[2], spectrogram[122:309])
    assert musicnn.logmel_patches(y).shape == (3, 187, 96)  # the default: no overlap
    assert musicnn.logmel_patches(y[: 2 * musicnn.SAMPLE_RATE]).shape == (0, 187, 96)


# --- the port against the original -----------------------------------------------------------


def _cached_model(model: str) -> musicnn.Musicnn:
    path = weights_path(model)
    if not path.is_file():
        reason = f"no {model} weights at {path}: run `merflow pretrained fetch musicnn`"
        if os.environ.get("CI"):
            pytest.fail(f"{reason} (CI fetches them in `make setup`)")
        pytest.skip(reason)
    return musicnn.load_cached(model)


@pytest.mark.parametrize("model", musicnn.MODELS)
def test_port_matches_the_original(model):
    reference = np.load(REFERENCE)
    outputs = musicnn.predict(_cached_model(model), reference["logmel"])
    for name, value in outputs.items():
        expected = reference[f"{model}.{name}"]
        error = np.abs(value - expected).max() / np.abs(expected).max()
        assert error <= MAX_RELATIVE_ERROR, f"{model} {name}: relative error {error:.2e}"
