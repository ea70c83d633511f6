"""Model-family registry: the trainer entry points of each family, found by name by the CLI, the leaderboard
and Python users (``families.get("labram").train(cfg)``).

A family is a ``Family`` object in its own package; registering one is one line in ``_FAMILIES``: a
``FamilyRef`` naming where the object lives (``"module:attribute"``, imported only when used) and the few
facts the CLI needs to register its commands without importing torch (stage names, command prefix, one
line of help). NeuroLM's entry is an adapter over its existing modules (``neurolm_train.config``,
``.train``, ``.evaluate``); its commands stay ``vq``, ``pretrain``, ``instruct`` and ``evaluate``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Family:
    """What the trainer, evaluation, CLI and leaderboard need from a model family.

    Attributes:
        name: family name (``neurolm``, ``labram``).
        stages: training stages in order (e.g. ``("vq", "pretrain", "finetune")``).
        configs: named model configs (e.g. ``("tiny", "base")``).
        stage_config: ``(stage, model, **overrides) -> run config`` (a typed dataclass with ``to_dict``).
        train: ``run config -> Path`` of the last checkpoint (single process or under torchrun).
        evaluate: ``(checkpoint, shards, tasks, out, splits, batch_size, limit, config) -> results dict``.
        help: one line per stage (and ``evaluate``) for the CLI.
        cli_prefix: the CLI command of stage S is ``cli_prefix + S`` (NeuroLM: none, e.g. ``vq``).
        extras: other entry points by name (e.g. ``export``: ``(checkpoint, dst) -> kind``).
    """

    name: str
    stages: tuple[str, ...]
    configs: tuple[str, ...]
    stage_config: Callable[..., Any]
    train: Callable[[Any], Path]
    evaluate: Callable[..., dict]
    help: dict[str, str]
    cli_prefix: str = ""
    extras: dict[str, Callable[..., Any]] = field(default_factory=dict)


def _neurolm() -> Family:
    from neurolm_train.config import STAGES, stage_config
    from neurolm_train.evaluate import evaluate
    from neurolm_train.train import train

    def _evaluate(ckpt, shards, tasks, out, splits=("val", "test"), batch_size=None, limit=None, config=None):
        return evaluate(ckpt, shards, tasks, out, splits, batch_size=batch_size, limit=limit, config=config)

    return Family(
        "neurolm",
        STAGES,
        ("tiny", "B", "L", "XL"),
        stage_config,
        train,
        _evaluate,
        {
            "vq": "text-aligned VQ tokenizer",
            "pretrain": "autoregressive pre-training",
            "instruct": "instruction tuning",
            "evaluate": "score answer options",
        },
    )


@dataclass(frozen=True)
class FamilyRef:
    """A registration: ``target`` = ``"module:attribute"`` of the ``Family`` (or of a function returning one);
    ``stages`` and ``cli_prefix`` as in ``Family`` (checked against it on first use); ``summary``: one line."""

    target: str
    stages: tuple[str, ...]
    cli_prefix: str
    summary: str


#: The registered families. One line per family.
_FAMILIES: dict[str, FamilyRef] = {
    "neurolm": FamilyRef("neurolm_train.families:_neurolm", ("vq", "pretrain", "instruct"), "", "NeuroLM"),
    "labram": FamilyRef(
        "neurolm_train.models.labram.family:FAMILY",
        ("vq", "pretrain", "finetune"),
        "labram-",
        "LaBraM (ICLR 2024): VQ-NSP tokenizer, masked EEG modelling, fine-tuning",
    ),
}
_CACHE: dict[str, Family] = {}


def names() -> list[str]:
    """Registered family names, in registration order."""
    return list(_FAMILIES)


def ref(name: str) -> FamilyRef:
    """The registration of ``name`` (no import). Raises KeyError listing the known names."""
    if name not in _FAMILIES:
        raise KeyError(f"unknown model family {name!r}; known: {names()}")
    return _FAMILIES[name]


def get(name: str) -> Family:
    """The ``Family`` registered as ``name`` (imported on first use). Raises KeyError listing the known names,
    RuntimeError when the family disagrees with its registration."""
    r = ref(name)
    if name not in _CACHE:
        module, attr = r.target.split(":")
        obj = getattr(importlib.import_module(module), attr)
        fam = obj() if callable(obj) and not isinstance(obj, Family) else obj
        if (fam.name, tuple(fam.stages), fam.cli_prefix) != (name, r.stages, r.cli_prefix):
            raise RuntimeError(
                f"family {name!r}: registration {r} does not match the family's own "
                f"{(fam.name, fam.stages, fam.cli_prefix)}"
            )
        _CACHE[name] = fam
    return _CACHE[name]
