"""What each model accepts under ``model_options:``: its options, their defaults, allowed values.

Every model, network or baseline, declares its options here as :class:`Option` (a default and the
:class:`Rule` its values obey); the registry (:mod:`merflow.models.registry`) names each model's
declaration. One check (:func:`resolve`) serves the Snakefile at parse time, ``merflow train``,
and the builders, so a wrong option stops a dry run with the same sentence a job would print.

This module imports neither torch nor scikit-learn: the Snakefile reads it at parse time. Why
each network's defaults are what they are is in the network's module docstring
(:mod:`merflow.models.malik`, :mod:`merflow.models.velankar`); the baselines' in
:mod:`merflow.learn.baselines`.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from merflow.errors import ConfigError


@dataclass(frozen=True)
class Rule:
    """What values an option takes: ``expected`` says it to the user, ``accepts`` checks it."""

    expected: str
    accepts: Callable[[Any], bool]


@dataclass(frozen=True)
class Option:
    default: Any
    rule: Rule


Options = Mapping[str, Option]


def _integer(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _number(value: Any) -> bool:
    real = isinstance(value, numbers.Real) and not isinstance(value, bool)
    return real and math.isfinite(value)


POSITIVE_INT = Rule("an integer >= 1", lambda v: _integer(v) and v >= 1)
POSITIVE = Rule("a number > 0", lambda v: _number(v) and v > 0)
NON_NEGATIVE = Rule("a number >= 0", lambda v: _number(v) and v >= 0)
FRACTION = Rule("a number from 0 up to (not including) 1", lambda v: _number(v) and 0 <= v < 1)
PAIR = Rule(
    "a pair [time, mel] of integers >= 1",
    lambda v: isinstance(v, list | tuple) and len(v) == 2 and all(map(POSITIVE_INT.accepts, v)),
)


def one_of(*allowed: str) -> Rule:
    return Rule(f"one of {', '.join(map(repr, allowed))}", lambda v: v in allowed)


def list_of(item: Rule) -> Rule:
    def accepts(value: Any) -> bool:
        return isinstance(value, list | tuple) and bool(value) and all(map(item.accepts, value))

    return Rule(f"a non-empty list, each {item.expected}", accepts)


INIT = Option("keras", one_of("keras", "torch"))

# --- networks ------------------------------------------------------------------------------------

MALIK: dict[str, Option] = {
    "filters": Option(8, POSITIVE_INT),  # CNN feature maps (Section 3.5: "eight units each")
    "kernel_size": Option(3, POSITIVE_INT),  # "receptive filter size of 3x3"
    "dense_units": Option(8, POSITIVE_INT),  # time-distributed FC
    "gru_units": Option(8, POSITIVE_INT),  # per direction; forward and backward concatenated
    "maxout_pieces": Option(4, POSITIVE_INT),  # Keras 1 MaxoutDense default; not in the paper
    "dropout": Option(0.25, FRACTION),  # baseline features; 0.75 on log-mel (FEATURE_OPTIONS)
    "l1": Option(0.1, NON_NEGATIVE),  # ElasticNet on CNN weights and activity
    "l2": Option(0.001, NON_NEGATIVE),
    "activity_reduction": Option("mean", one_of("mean", "sum")),  # "sum": Keras 1
    "init": INIT,
}

VELANKAR_CRNN: dict[str, Option] = {
    "filters": Option(56, POSITIVE_INT),  # per Conv1D block (paper)
    "kernel_size": Option(5, POSITIVE_INT),  # frames (paper)
    "n_blocks": Option(3, POSITIVE_INT),  # Conv1D blocks (paper: "executed thrice")
    "pool_size": Option(2, POSITIVE_INT),  # MaxPool1D over time (ancestor)
    "padding": Option("valid", one_of("valid", "same")),  # ancestor: valid
    "lstm_units": Option(96, POSITIVE_INT),  # (paper)
    "lstm_output": Option("last", one_of("last", "mean")),  # how the LSTM sequence is summarized
    "hidden_units": Option(64, POSITIVE_INT),  # dense layer after the LSTM (paper)
    "hidden_activation": Option("linear", one_of("linear", "relu")),  # ancestor: linear
    "dropout": Option(0.4, FRACTION),  # after each block, the LSTM and the dense layer (ancestor)
    "l2": Option(0.001, NON_NEGATIVE),  # on conv and hidden dense kernels (ancestor)
    "init": INIT,
}

VELANKAR_PARALLEL: dict[str, Option] = {
    "filters": Option((16, 32, 64, 64, 64), list_of(POSITIVE_INT)),  # one Conv2D block each
    "kernel_size": Option((3, 1), PAIR),  # (time, mel) (paper)
    # -> 256 values on 640 x 128 (ancestor); one pool per block of `filters`
    "pool_sizes": Option(((2, 2), (2, 2), (2, 2), (4, 4), (4, 4)), list_of(PAIR)),
    "rnn_pool": Option((4, 2), PAIR),  # (time, mel) before the GRU (paper)
    "gru_units": Option(64, POSITIVE_INT),  # per direction, last states concatenated -> 128
    "dropout": Option(0.0, FRACTION),  # on the concatenated CNN + RNN vector; none in the paper
    "l2": Option(0.0, NON_NEGATIVE),  # on conv and output kernels; none in the paper
    "init": INIT,
}

MLP: dict[str, Option] = {
    "hidden": Option(256, POSITIVE_INT),
    "dropout": Option(0.5, FRACTION),
}

# --- baselines -----------------------------------------------------------------------------------

RIDGE: dict[str, Option] = {"alpha": Option(1.0, NON_NEGATIVE)}

LOGISTIC: dict[str, Option] = {
    "C": Option(1.0, POSITIVE),  # inverse regularization strength
    "max_iter": Option(1000, POSITIVE_INT),
}

# The grids searched by 3-fold cross-validation on the training part.
SVM: dict[str, Option] = {
    "C": Option([1.0, 0.1, 10.0, 100.0], list_of(POSITIVE)),
    "gamma": Option(
        ["scale", 0.001, 0.01],
        list_of(Rule("'scale' or a number > 0", lambda v: v == "scale" or POSITIVE.accepts(v))),
    ),
}


def defaults(declared: Options) -> dict[str, Any]:
    return {name: option.default for name, option in declared.items()}


def resolve(model: str, declared: Options, given: Mapping[str, Any]) -> dict[str, Any]:
    """The defaults under ``given``; an unknown option or a value its rule refuses raises a
    :class:`ConfigError` naming the key and what is allowed."""
    unknown = sorted(set(given) - set(declared))
    if unknown:
        allowed = ", ".join(sorted(declared)) or f"none ({model} has no options)"
        raise ConfigError(
            f"config error: model_options.{model} has unknown option(s) "
            f"{', '.join(map(repr, unknown))}; allowed: {allowed}"
        )
    for name, value in given.items():
        if not declared[name].rule.accepts(value):
            raise ConfigError(
                f"config error: model_options.{model}.{name} = {value!r}; "
                f"expected {declared[name].rule.expected}"
            )
    return {**defaults(declared), **given}
