"""The four architectures: shapes, parameter counts against the papers, regularization, learning."""

from __future__ import annotations

import copy
import json
import re

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from merflow import models
from merflow.errors import ConfigError
from merflow.models import MODELS, build_model, count_parameters
from merflow.models.blocks import Conv2dBlock, Maxout, SequenceDropout, last_states

MALIK = ("malik_crnn", "malik_crnn_nb")
VELANKAR = ("velankar_crnn", "velankar_parallel")


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """These models are tiny: one thread is faster than two fighting over a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def malik_expected_parameters(n_features: int, branched: bool, pieces: int = 4) -> int:
    """Count by hand from the paper's layer sizes (8 filters, dense 8, BiGRU 8, maxout)."""
    conv = 8 * 1 * 3 * 3 + 8
    batch_norm = 2 * 8
    dense = 8 * (8 * n_features) + 8
    bigru = 2 * 3 * (8 * 8 + 8 * 8 + 8 + 8)  # per direction: 3 gates, input + recurrent + 2 biases
    maxout_unit = 16 * pieces + pieces
    if branched:
        return conv + batch_norm + 2 * (dense + bigru + maxout_unit)
    return conv + batch_norm + dense + bigru + 2 * maxout_unit


# --- shapes ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", MALIK)
@pytest.mark.parametrize("n_features", [260, 64])
def test_malik_maps_every_window_to_arousal_and_valence(name, n_features):
    model = build_model(name, n_features=n_features, n_outputs=2).eval()
    for seq_len in (10, 20, 30, 60):
        out = model(torch.randn(3, seq_len, n_features))
        assert out.shape == (3, seq_len, 2)
        assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", VELANKAR)
@pytest.mark.parametrize(("n_mels", "n_frames"), [(128, 640), (64, 160)])
@pytest.mark.parametrize("n_classes", [3, 4])
def test_velankar_maps_a_spectrogram_to_class_logits(name, n_mels, n_frames, n_classes):
    model = build_model(name, n_features=n_mels, n_outputs=n_classes, n_frames=n_frames).eval()
    logits = model(torch.randn(2, n_mels, n_frames))
    assert logits.shape == (2, n_classes)
    assert torch.isfinite(logits).all()
    # logits, not probabilities: the softmax belongs to the loss
    assert not torch.allclose(logits.exp().sum(1), torch.ones(2))


def test_parallel_flattens_to_the_papers_256_and_384_on_128_by_640():
    model = build_model("velankar_parallel", n_features=128, n_outputs=3, n_frames=640)
    image = torch.randn(1, 1, 640, 128)  # (batch, channel, time, mel), the paper's orientation
    assert model.cnn(image).flatten(1).shape == (1, 256)
    assert model.classifier.in_features == 256 + 128


def test_crnn_runs_the_lstm_over_pooled_time_steps():
    model = build_model("velankar_crnn", n_features=128, n_outputs=3, n_frames=640)
    steps = model.blocks(torch.randn(1, 128, 640))
    # valid conv (kernel 5) then pool 2, three times: 640 -> 318 -> 157 -> 76
    assert steps.shape == (1, 56, 76)


def test_conv2d_block_is_conv_relu_pool_in_values_and_gradients():
    block = Conv2dBlock(3, 8, (3, 1), (2, 2))
    x = torch.randn(2, 3, 20, 16)  # odd sizes and negative windows included
    x_literal = x.clone().requires_grad_()
    x_block = x.clone().requires_grad_()
    literal = block.pool(F.relu(block.conv(x_literal)))  # the order the paper describes
    assert torch.equal(block(x_block), literal)
    weights = torch.randn_like(literal)
    (grad_literal,) = torch.autograd.grad((literal * weights).sum(), x_literal)
    (grad_block,) = torch.autograd.grad((block(x_block) * weights).sum(), x_block)
    assert torch.equal(grad_block, grad_literal)


def test_parallel_channels_last_gives_the_plain_layouts_logits_and_gradients():
    model = build_model("velankar_parallel", n_features=64, n_outputs=4, n_frames=160)
    x = torch.randn(3, 64, 160)

    def plain_forward(x):  # the same layers on tensors in the default (contiguous) layout
        image = x.transpose(1, 2).unsqueeze(1).contiguous()
        _, h_n = model.gru(model.rnn_pool(image).squeeze(1))
        features = torch.cat([model.cnn(image).flatten(1), last_states(h_n, True)], dim=1)
        return model.classifier(features)

    plain = plain_forward(x)
    fast = model(x)
    torch.testing.assert_close(fast, plain, rtol=1e-5, atol=1e-5)
    conv = model.cnn[0].conv.weight
    (grad_plain,) = torch.autograd.grad(plain.square().sum(), conv)
    (grad_fast,) = torch.autograd.grad(fast.square().sum(), conv)
    torch.testing.assert_close(grad_fast, grad_plain, rtol=1e-4, atol=1e-5)


# --- parameter counts -------------------------------------------------------------------------


def test_malik_parameter_counts_match_the_paper_and_a_hand_count():
    crnn = count_parameters(build_model("malik_crnn", n_features=260, n_outputs=2))
    crnn_nb = count_parameters(build_model("malik_crnn_nb", n_features=260, n_outputs=2))
    crnn_mel = count_parameters(build_model("malik_crnn", n_features=64, n_outputs=2))
    print(f"malik_crnn 260: {crnn}, malik_crnn_nb 260: {crnn_nb}, malik_crnn 64 mels: {crnn_mel}")
    assert 30_000 <= crnn <= 36_000  # paper: "about 30 k"
    assert 17_000 <= crnn_nb <= 19_000  # paper: "about 17 k"
    assert 9_000 <= crnn_mel <= 11_000  # paper: "about 10 k"
    assert crnn == malik_expected_parameters(260, branched=True)
    assert crnn_nb == malik_expected_parameters(260, branched=False)
    assert crnn_mel == malik_expected_parameters(64, branched=True)


def test_maxout_pieces_change_only_the_output_layer():
    model = build_model("malik_crnn", n_features=260, n_outputs=2, maxout_pieces=2)
    assert count_parameters(model) == malik_expected_parameters(260, branched=True, pieces=2)


def test_velankar_parameter_counts_are_stable():
    crnn = count_parameters(build_model("velankar_crnn", n_features=128, n_outputs=3, n_frames=640))
    parallel = count_parameters(
        build_model("velankar_parallel", n_features=128, n_outputs=3, n_frames=640)
    )
    print(f"velankar_crnn: {crnn}, velankar_parallel: {parallel}")
    assert crnn == 133_243
    assert parallel == 83_619


# --- regularization -------------------------------------------------------------------------


def test_malik_penalty_is_elastic_net_on_cnn_weights_and_activity():
    model = build_model("malik_crnn", n_features=64, n_outputs=2)
    x = torch.randn(4, 10, 64)
    model(x)
    weight, bias = model.cnn.conv.weight, model.cnn.conv.bias
    activity = F.conv2d(x.unsqueeze(1), weight, bias, padding=1)
    expected = 0.1 * weight.abs().sum() + 0.001 * weight.square().sum()
    expected = expected + 0.1 * activity.abs().mean() + 0.001 * activity.square().mean()
    torch.testing.assert_close(model.penalty(), expected)


def test_malik_sum_reduction_is_keras_activity_regularization():
    model = build_model("malik_crnn", n_features=64, n_outputs=2, activity_reduction="sum")
    x = torch.randn(4, 10, 64)
    model(x)
    weight, bias = model.cnn.conv.weight, model.cnn.conv.bias
    activity = F.conv2d(x.unsqueeze(1), weight, bias, padding=1)
    weights_part = 0.1 * weight.abs().sum() + 0.001 * weight.square().sum()
    # Keras 1: sum over units, mean over the batch
    activity_part = (0.1 * activity.abs().sum() + 0.001 * activity.square().sum()) / 4
    torch.testing.assert_close(model.penalty(), weights_part + activity_part)


def test_velankar_crnn_penalty_is_l2_on_conv_and_hidden_kernels():
    model = build_model("velankar_crnn", n_features=64, n_outputs=3, n_frames=160, l2=0.01)
    kernels = [block.conv.weight for block in model.blocks] + [model.hidden.weight]
    expected = sum(0.01 * k.square().sum() for k in kernels)
    torch.testing.assert_close(model.penalty(), expected)


@pytest.mark.parametrize(
    ("name", "sizes", "options"),
    [
        ("malik_crnn", {"n_features": 64, "n_outputs": 2}, {}),
        ("malik_crnn_nb", {"n_features": 64, "n_outputs": 2}, {}),
        ("velankar_crnn", {"n_features": 64, "n_outputs": 3, "n_frames": 160}, {}),
        ("velankar_parallel", {"n_features": 64, "n_outputs": 3, "n_frames": 160}, {"l2": 1e-3}),
    ],
)
def test_penalty_is_positive_and_differentiable(name, sizes, options):
    model = build_model(name, **sizes, **options)
    shape = (2, 10, 64) if name in MALIK else (2, 64, 160)
    model(torch.randn(shape))
    penalty = model.penalty()
    assert penalty.dim() == 0
    assert penalty.item() > 0
    penalty.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads
    assert any(g.abs().sum() > 0 for g in grads)


def test_penalty_is_float32_under_autocast():
    """Under mixed precision the activity map is half precision; its sum must not overflow."""
    model = build_model("malik_crnn", n_features=260, n_outputs=2, activity_reduction="sum")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        model(torch.randn(4, 60, 260) * 10)
        penalty = model.penalty()
    assert model.cnn.activity.dtype == torch.bfloat16
    assert penalty.dtype == torch.float32
    assert torch.isfinite(penalty)


def test_parallel_without_regularization_has_zero_penalty():
    model = build_model("velankar_parallel", n_features=64, n_outputs=3, n_frames=160)
    model(torch.randn(2, 64, 160))
    penalty = model.penalty()
    assert penalty.dim() == 0
    assert penalty.item() == 0.0


# --- structure ---------------------------------------------------------------------------------


def test_malik_branches_are_arousal_then_valence():
    """Changing the second branch changes the valence column only."""
    model = build_model("malik_crnn", n_features=64, n_outputs=2).eval()
    x = torch.randn(2, 10, 64)
    before = model(x)
    with torch.no_grad():
        for p in model.branches[1].parameters():
            p.add_(0.5)
    after = model(x)
    torch.testing.assert_close(after[..., 0], before[..., 0])
    assert not torch.allclose(after[..., 1], before[..., 1])


def test_maxout_is_the_max_of_linear_pieces():
    maxout = Maxout(5, 2, pieces=3)
    x = torch.randn(4, 7, 5)
    pieces = (x @ maxout.linear.weight.T + maxout.linear.bias).reshape(4, 7, 2, 3)
    torch.testing.assert_close(maxout(x), pieces.max(dim=-1).values)


def test_sequence_dropout_drops_a_unit_for_the_whole_sequence():
    dropout = SequenceDropout(0.5)
    x = torch.ones(8, 20, 6)
    out = dropout(x)
    assert (out == out[:, :1, :]).all()  # same mask at every time step
    assert set(out.unique().tolist()) <= {0.0, 2.0}
    assert torch.equal(dropout.eval()(x), x)


def test_keras_initialization_sets_lstm_forget_bias_to_one():
    model = build_model("velankar_crnn", n_features=64, n_outputs=3, n_frames=160)
    bias = model.lstm.bias_ih_l0.detach()
    assert torch.equal(bias[96:192], torch.ones(96))
    assert torch.equal(bias[:96], torch.zeros(96))
    assert torch.equal(model.lstm.bias_hh_l0.detach(), torch.zeros(384))


def test_a_model_can_be_copied_after_a_forward_pass():
    """Training keeps the best epoch with copy.deepcopy; the kept activity must not block it."""
    model = build_model("malik_crnn", n_features=64, n_outputs=2)
    x = torch.randn(2, 10, 64)
    model(x)
    clone = copy.deepcopy(model)
    torch.testing.assert_close(clone.eval()(x), model.eval()(x))
    assert model.cnn.activity is not None  # the original keeps its penalty


def test_same_seed_same_model():
    outputs = []
    for _ in range(2):
        torch.manual_seed(7)
        model = build_model("malik_crnn", n_features=64, n_outputs=2).eval()
        outputs.append(model(torch.ones(1, 10, 64)))
    torch.testing.assert_close(outputs[0], outputs[1], rtol=0, atol=0)


# --- learning ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", MALIK + VELANKAR)
def test_each_model_overfits_one_small_batch(name):
    """In eval mode (no dropout) the task loss alone falls by more than 80 % on one batch."""
    torch.manual_seed(0)
    if name in MALIK:
        model = build_model(name, n_features=64, n_outputs=2)
        x, y = torch.randn(8, 10, 64), torch.rand(8, 10, 2) * 2 - 1

        def loss_fn(out):
            return (out - y).square().mean().sqrt()  # RMSE, the paper's loss
    else:
        model = build_model(name, n_features=64, n_outputs=3, n_frames=160)
        x, y = torch.randn(6, 64, 160), torch.tensor([0, 1, 2, 0, 1, 2])

        def loss_fn(out):
            return F.cross_entropy(out, y)

    model.eval()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    initial = loss_fn(model(x)).item()
    losses = []
    for _ in range(200):
        loss = loss_fn(model(x))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if losses[-1] < 0.2 * initial:
            break
    final = loss_fn(model(x)).item()
    print(f"{name}: loss {initial:.3f} -> {final:.3f} in {len(losses)} steps")
    assert final < 0.2 * initial


# --- registry and errors --------------------------------------------------------------------


NETWORKS = models.registry.names(baseline=False)


def test_registry_describes_every_model():
    assert set(NETWORKS) == {*MALIK, *VELANKAR, "mlp"}
    baselines = {"mean", "ridge", "majority", "logistic", "svm"}
    assert set(models.registry.names(baseline=True)) == baselines
    inputs = {"mlp": ("clip",), "majority": ("frames", "clip"), "logistic": ("frames", "clip")}
    inputs["svm"] = inputs["logistic"]
    for name, spec in MODELS.items():
        assert spec.name == name
        assert spec.task == (
            "regression" if name in MALIK + ("mean", "ridge") else "classification"
        )
        default = ("windows",) if spec.task == "regression" else ("frames",)
        assert spec.inputs == inputs.get(name, default)
        assert spec.sequence == (name in MALIK)
        json.dumps(spec.default_options())  # run records store them


def test_defaults_can_be_passed_back_as_options():
    for name in NETWORKS:
        build_model(
            name, n_features=64, n_outputs=3, n_frames=160, **MODELS[name].default_options()
        )


def test_paper_dropout_per_feature():
    assert models.spec("malik_crnn").options_for_feature("logmel_500ms") == {"dropout": 0.75}
    assert models.spec("malik_crnn_nb").options_for_feature("compare_500ms") == {"dropout": 0.25}
    assert models.spec("velankar_crnn").options_for_feature("logmel") == {}


def test_sizes_may_be_numpy_integers():
    sizes = {"n_features": np.int64(64), "n_outputs": np.int64(3), "n_frames": np.int64(160)}
    for name in NETWORKS:
        build_model(name, **sizes)
    with pytest.raises(ConfigError, match="n_features"):
        build_model("malik_crnn", n_features=64.5, n_outputs=2)


def test_yaml_lists_are_accepted_for_tuple_options():
    model = build_model(
        "velankar_parallel", n_features=128, n_outputs=3, n_frames=640, rnn_pool=[4, 2]
    )
    assert model.rnn_pool.kernel_size == (4, 2)


def test_unknown_model_names_the_known_ones():
    with pytest.raises(ConfigError, match="known models: malik_crnn"):
        build_model("resnet", n_features=64, n_outputs=2)
    with pytest.raises(ConfigError, match="known models"):
        models.spec("resnet")


def test_unknown_option_names_the_allowed_ones():
    with pytest.raises(ConfigError, match=r"'dropuot'.*allowed: .*dropout"):
        build_model("malik_crnn", n_features=64, n_outputs=2, dropuot=0.5)


@pytest.mark.parametrize(
    ("name", "options", "expected"),
    [
        ("malik_crnn", {"dropout": 1.5}, "malik_crnn.dropout = 1.5; expected a number from 0"),
        ("malik_crnn", {"activity_reduction": "median"}, "expected one of 'mean', 'sum'"),
        ("malik_crnn", {"maxout_pieces": 0}, "maxout_pieces = 0; expected an integer >= 1"),
        ("malik_crnn", {"l1": -0.1}, "malik_crnn.l1 = -0.1; expected a number >= 0"),
        ("velankar_crnn", {"padding": "causal"}, "expected one of 'valid', 'same'"),
        ("velankar_parallel", {"pool_sizes": [[2, 2]]}, "filters and pool_sizes need one entry"),
        ("velankar_parallel", {"kernel_size": [3]}, "kernel_size = [3]; expected a pair"),
    ],
)
def test_bad_option_values_are_config_errors(name, options, expected):
    with pytest.raises(ConfigError, match=re.escape(expected)):
        build_model(name, n_features=64, n_outputs=3, n_frames=160, **options)


def test_frame_models_need_n_frames():
    with pytest.raises(ConfigError, match="needs n_frames"):
        build_model("velankar_crnn", n_features=128, n_outputs=3)


@pytest.mark.parametrize("name", VELANKAR)
def test_too_few_frames_is_a_config_error(name):
    with pytest.raises(ConfigError, match="frames"):
        build_model(name, n_features=64, n_outputs=3, n_frames=20)


def test_windows_with_another_feature_count_are_a_clear_error():
    model = build_model("malik_crnn", n_features=260, n_outputs=2)
    with pytest.raises(ConfigError, match="260 features"):
        model(torch.randn(1, 10, 64))


@pytest.mark.parametrize("name", VELANKAR)
def test_input_of_another_size_is_a_clear_error(name):
    model = build_model(name, n_features=64, n_outputs=3, n_frames=160)
    with pytest.raises(ConfigError, match="64 mels, 160 frames"):
        model(torch.randn(1, 64, 200))


def test_every_network_declares_what_the_training_loop_needs():
    """forward and penalty are declared by the Network base class, not left to convention: every
    registered network is one, and one that lacks a penalty cannot be made."""
    from merflow.models.network import Network

    for name in models.registry.names(baseline=False):
        network = build_model(name, n_features=128, n_outputs=3, n_frames=256)
        assert isinstance(network, Network), name
        assert network.penalty().shape == (), name

    class NoPenalty(Network):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x

    with pytest.raises(TypeError, match="penalty"):
        NoPenalty()
