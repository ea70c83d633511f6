"""Typed configurations of the leaderboard rows and their content hash.

A leaderboard *row* is a named model (``chance-majority``, ``chance-stratified``, ``bandpower-lr``,
``smallnet``, ``neurolm-tiny``) of one *kind* (``chance``, ``bandpower``, ``smallnet``, ``neurolm``) with one
frozen dataclass config. The config and the data selection (:class:`DataConfig`) are hashed together; the
hash keys the results store (``store.py``), so a changed hyper-parameter re-runs the row and is never
averaged with the old one.

The code version (git commit) is recorded with every result but is deliberately **not** part of the hash:
otherwise every unrelated commit would invalidate all results. Change :data:`SCHEMA_VERSION` when a code
change alters what a config means.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

try:  # Python >= 3.11
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

#: Bump when the meaning of a config or the record layout changes (invalidates every stored record).
SCHEMA_VERSION = 1


@dataclass(frozen=True)
class DataConfig:
    """Which windows of a task a run uses.

    ``max_windows_per_split``: ``None`` = every window (the real leaderboard). An integer keeps a
    deterministic subset of about that many windows per split, spread evenly over every (subject, label)
    group so that no subject or class disappears (``windows.select_keys``); for reduced test runs only.
    The ``neurolm`` kind trains through the trainer's streaming loader on every train window (its length
    is set by epochs/steps) and is scored on the same selected test windows as every other row.
    """

    max_windows_per_split: int | None = None


@dataclass(frozen=True)
class ChanceConfig:
    """Chance baselines (``sklearn.dummy.DummyClassifier``).

    ``strategy``: ``"prior"`` predicts the training class prior for every window (the majority class;
    AUROC exactly 0.5, BAcc exactly 1/K); ``"stratified"`` draws one-hot random predictions with the
    training class frequencies (seed-dependent); ``"uniform"`` draws classes uniformly.
    """

    strategy: str = "prior"


@dataclass(frozen=True)
class BandPowerConfig:
    """Log band power per channel (Welch) + standardised logistic regression.

    Bands in Hz as ``(name, low, high)``; the top edge 75 Hz is the low-pass of the preprocessing
    (docs/neurolm-reference.md §1.1), the bottom edge 0.5 Hz excludes the DC bin. ``nperseg`` = 200 samples is 1 s
    at 200 Hz (1 Hz resolution); ``noverlap`` = 100 samples. ``c_grid``: inverse regularisation strengths
    tried; the one with the best ``select_metric`` on the val split is kept (test is never looked at).
    """

    bands: tuple[tuple[str, float, float], ...] = (
        ("delta", 0.5, 4.0),
        ("theta", 4.0, 8.0),
        ("alpha", 8.0, 13.0),
        ("beta", 13.0, 30.0),
        ("gamma", 30.0, 75.0),
    )
    nperseg: int = 200
    noverlap: int = 100
    c_grid: tuple[float, ...] = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)
    class_weight: str = "balanced"
    max_iter: int = 5000
    select_metric: str = "bacc"


@dataclass(frozen=True)
class SmallNetConfig:
    """A compact ShallowConvNet-style network trained from scratch on the windows (``smallnet.py``).

    Architecture (Schirrmeister et al. 2017, reordered spatial-first so that it is cheap on a CPU):
    ``n_spatial`` spatial filters (1x1 conv over channels) -> ``n_temporal`` depthwise temporal filters per
    spatial filter (``kernel`` samples; 25 = 125 ms at 200 Hz) -> BatchNorm -> square -> average pool
    (``pool``/``pool_stride`` samples; 75/15 as in ShallowConvNet) -> log -> dropout -> linear.
    Input is µV / 100 (the trainer's unit, docs/architecture.md). AdamW, class-balanced cross-entropy;
    the epoch with the best ``select_metric`` on val is kept (test is never looked at); training stops
    after ``patience`` epochs without a val improvement (at most ``epochs``).
    """

    n_spatial: int = 16
    n_temporal: int = 4
    kernel: int = 25
    pool: int = 75
    pool_stride: int = 15
    dropout: float = 0.5
    epochs: int = 30
    patience: int = 8
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-2
    select_metric: str = "bacc"


@dataclass(frozen=True)
class NeuroLMRowConfig:
    """The NeuroLM row (``neurolm.py``): train ``model`` through vq -> pretrain -> instruct with the
    trainer (``neurolm_train.train``) on the task's own shards, or score a given ``checkpoint``.

    The vq and pretrain stages read only the task's **train** windows, labels unused (no other corpus, so
    no test subject leaks into pre-training); instruct trains on the train windows and keeps the step with
    the best val balanced accuracy (``best.pt``, validated every ``instruct_eval_every`` steps, 0 = at
    the end only; ``val_limit`` windows per validation, None = all). ``*_epochs`` are used unless
    ``*_steps`` is set; ``batch_size`` None = the trainer's default for ``model`` (16 for tiny).
    ``features``: ``bidirectional`` (official, leaks, reference §4.4) or ``causal``. ``paper_decoding``: also
    record the paper's greedy decoding + string parsing (hard-label scores and parse-failure rate, reference
    §5.3) beside the probability-based scores. ``checkpoint``: what to score instead of training: an
    instruct checkpoint of this trainer, or official files (``VQ.pt,NeuroLM-B.pt``, comma-separated, or one
    ``NeuroLM-*.pt``; ``neurolm_train.evaluate.load_model``) whose model config is ``checkpoint_config``
    (None = inferred B/L/XL from the tensor shapes); every file's sha256 enters the config hash.
    """

    model: str = "tiny"
    vq_epochs: int = 1
    pretrain_epochs: int = 1
    instruct_epochs: int = 1
    vq_steps: int | None = None
    pretrain_steps: int | None = None
    instruct_steps: int | None = None
    batch_size: int | None = None
    instruct_eval_every: int = 0
    val_limit: int | None = None
    features: str = "bidirectional"
    paper_decoding: bool = True
    checkpoint: str | None = None
    checkpoint_config: str | None = None


@dataclass(frozen=True)
class RiemannConfig:
    """Riemannian tangent space + logistic regression (``riemann.py``; pyriemann, Barachant et al. 2012).

    Per window: the spatial covariance (``estimator``: ``"oas"`` Oracle Approximating Shrinkage, well
    conditioned for 64 channels x 800 samples), optionally after a zero-phase band-pass ``band`` (Hz, None =
    the stored 0.1-75 Hz signal); projected to the tangent space at the Riemannian mean of the train
    covariances (``TangentSpace(metric="riemann")``); standardised logistic regression with ``C`` chosen on val
    from ``c_grid`` (ties: smaller C).
    """

    estimator: str = "oas"
    band: tuple[float, float] | None = None
    c_grid: tuple[float, ...] = (1e-3, 1e-2, 1e-1, 1.0, 10.0)
    class_weight: str = "balanced"
    max_iter: int = 5000
    select_metric: str = "bacc"


@dataclass(frozen=True)
class CSPConfig:
    """Common spatial patterns + shrinkage LDA (``riemann.py``; ``mne.decoding.CSP``, Ramoser et al. 2000).

    Band-pass ``band`` Hz first (8-30 Hz: the mu and beta rhythms of motor imagery, as MOABB's
    ``LeftRightImagery`` 8-32 Hz), then ``n_components`` CSP filters (6, MOABB's CSP+LDA pipeline) with
    Ledoit-Wolf regularised covariances, log-variance features, LDA with Ledoit-Wolf shrinkage. No
    hyper-parameter is tuned; val is scored for the record only.
    """

    band: tuple[float, float] | None = (8.0, 30.0)
    n_components: int = 6
    reg: str = "ledoit_wolf"
    select_metric: str = "bacc"


@dataclass(frozen=True)
class BraindecodeConfig:
    """A braindecode network trained from scratch on the windows (``braindecode_nets.py``).

    ``model``: ``"EEGNetv4"`` (Lawhern et al. 2018) or ``"ShallowFBCSPNet"`` (Schirrmeister et al. 2017), with
    braindecode's default hyper-parameters. ``resample_hz``: windows are resampled (``scipy.signal.resample_poly``)
    to the rate the architecture was designed for (EEGNet 128 Hz; ShallowFBCSPNet 250 Hz in the paper, kept at
    the stored 200 Hz here: its 25-sample kernel is then 125 ms). Input: µV divided by the train windows' std. AdamW
    (``lr``/``weight_decay``: braindecode's examples use 1e-3 / 0 for EEGNet and 6.25e-4 / 0 for the shallow
    net), class-balanced cross-entropy, cosine learning-rate decay over ``epochs``; the epoch with the best val
    ``select_metric`` is kept (test is never looked at); stops after ``patience`` epochs without improvement.
    """

    model: str = "EEGNetv4"
    resample_hz: int = 128
    epochs: int = 30
    patience: int = 8
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    select_metric: str = "bacc"


#: Config class per model kind. A new kind (e.g. a LaBraM row) adds its config class here and its fitter to
#: ``runner.FITTERS`` (``register_kind`` does both).
KIND_CONFIGS: dict[str, type] = {
    "chance": ChanceConfig,
    "bandpower": BandPowerConfig,
    "smallnet": SmallNetConfig,
    "neurolm": NeuroLMRowConfig,
    "riemann": RiemannConfig,
    "csp": CSPConfig,
    "braindecode": BraindecodeConfig,
}


@dataclass(frozen=True)
class ModelSpec:
    """A named leaderboard row: ``name`` (as shown), ``kind`` (key of :data:`KIND_CONFIGS`), ``config``."""

    name: str
    kind: str
    config: Any

    def __post_init__(self) -> None:
        if self.kind not in KIND_CONFIGS:
            raise ValueError(f"unknown model kind {self.kind!r}; known: {sorted(KIND_CONFIGS)}")
        if not isinstance(self.config, KIND_CONFIGS[self.kind]):
            raise TypeError(f"{self.name}: config must be {KIND_CONFIGS[self.kind].__name__}")


#: The built-in rows, in the order they are run and shown.
DEFAULT_MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec("chance-majority", "chance", ChanceConfig("prior")),
        ModelSpec("chance-stratified", "chance", ChanceConfig("stratified")),
        ModelSpec("bandpower-lr", "bandpower", BandPowerConfig()),
        ModelSpec("riemann-ts-lr", "riemann", RiemannConfig()),
        ModelSpec("csp-lda", "csp", CSPConfig()),
        ModelSpec("eegnet", "braindecode", BraindecodeConfig("EEGNetv4", resample_hz=128, lr=1e-3)),
        ModelSpec(
            "shallow-fbcsp", "braindecode", BraindecodeConfig("ShallowFBCSPNet", resample_hz=200, lr=6.25e-4)
        ),
        ModelSpec("smallnet", "smallnet", SmallNetConfig()),
        ModelSpec("neurolm-tiny", "neurolm", NeuroLMRowConfig()),
    )
}


#: Rows run only when named: ``neurolm-official`` scores published NeuroLM files (``checkpoint`` required,
#: ``VQ.pt,NeuroLM-B.pt``; the variant is inferred from the tensor shapes unless ``checkpoint_config`` names it).
OPTIONAL_MODELS: dict[str, ModelSpec] = {
    "neurolm-official": ModelSpec("neurolm-official", "neurolm", NeuroLMRowConfig(model="B")),
}


def _coerce(value: str, like: Any, where: str) -> Any:
    """Convert the string ``value`` to the type of the current value ``like`` (bool/int/float/str/None/tuple)."""
    if isinstance(like, bool):
        if value.lower() in ("1", "true", "yes"):
            return True
        if value.lower() in ("0", "false", "no"):
            return False
        raise ValueError(f"{where}: expected a boolean, got {value!r}")
    if isinstance(like, int):
        return int(value)
    if isinstance(like, float):
        return float(value)
    if isinstance(like, tuple) or like is None:
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            return value if like is None else tuple(v.strip() for v in value.split(","))
        return _tuplify(parsed) if isinstance(parsed, list) else parsed
    return value


def _tuplify(obj: Any) -> Any:
    """Lists (from JSON or TOML) to tuples, recursively, so that configs stay hashable and frozen."""
    if isinstance(obj, list):
        return tuple(_tuplify(v) for v in obj)
    if isinstance(obj, dict):
        return tuple((k, _tuplify(v)) for k, v in obj.items())
    return obj


def with_overrides(spec: ModelSpec, overrides: dict[str, Any]) -> ModelSpec:
    """Return ``spec`` with config fields replaced; string values are coerced to the field's current type.

    Raises ``KeyError`` for an unknown field (the message lists the valid ones).
    """
    names = {f.name for f in dataclasses.fields(spec.config)}
    changes: dict[str, Any] = {}
    for key, value in overrides.items():
        if key not in names:
            raise KeyError(f"{spec.name}: no config field {key!r}; fields: {sorted(names)}")
        current = getattr(spec.config, key)
        changes[key] = (
            _coerce(value, current, f"{spec.name}.{key}") if isinstance(value, str) else _tuplify(value)
        )
    return ModelSpec(spec.name, spec.kind, dataclasses.replace(spec.config, **changes))


def parse_sets(items: list[str]) -> dict[str, dict[str, str]]:
    """Parse CLI ``--set MODEL.FIELD=VALUE`` items into ``{model: {field: value}}``.

    Raises ``ValueError`` on a malformed item.
    """
    out: dict[str, dict[str, str]] = {}
    for item in items:
        lhs, sep, value = item.partition("=")
        model, dot, fld = lhs.rpartition(".")
        if not sep or not dot or not model or not fld:
            raise ValueError(f"--set expects MODEL.FIELD=VALUE, got {item!r}")
        out.setdefault(model.strip(), {})[fld.strip()] = value.strip()
    return out


def config_payload(spec: ModelSpec, data: DataConfig) -> dict[str, Any]:
    """The JSON-able description that is hashed and stored with every record.

    A config naming input files (``checkpoint``: one path or comma-separated paths) adds their sha256 under
    ``inputs`` (comma-joined, in the same order), so a changed file re-runs the row. Raises
    ``FileNotFoundError`` when a file is missing.
    """
    payload: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "model": spec.name,
        "kind": spec.kind,
        "config": dataclasses.asdict(spec.config),
        "data": dataclasses.asdict(data),
    }
    checkpoint = getattr(spec.config, "checkpoint", None)
    if checkpoint:
        payload["inputs"] = {"checkpoint_sha256": checkpoint_sha256(checkpoint)}
    return payload


def checkpoint_sha256(checkpoint: str) -> str:
    """sha256 hex of each file of a (comma-separated) ``checkpoint`` value, comma-joined in its order.
    Raises ``FileNotFoundError`` for a missing file."""
    return ",".join(file_sha256(Path(p.strip())) for p in checkpoint.split(","))


def file_sha256(path: Path) -> str:
    """sha256 hex of a file, read in 16-MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 24):
            digest.update(block)
    return digest.hexdigest()


def stable_hash(obj: Any) -> str:
    """sha256 hex of the canonical JSON of ``obj`` (sorted keys, no whitespace; tuples become lists)."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(blob).hexdigest()


def config_hash(spec: ModelSpec, data: DataConfig) -> str:
    """Hash of :func:`config_payload`: the key that decides whether a stored record is still valid."""
    return stable_hash(config_payload(spec, data))


def resolve_models(
    names: list[str] | None, sets: dict[str, dict[str, str]] | None = None, config_file: Path | None = None
) -> list[ModelSpec]:
    """The rows to run: built-in ``names`` (default: all of :data:`DEFAULT_MODELS`, in order; the rows of
    :data:`OPTIONAL_MODELS` only when named) with overrides.

    ``config_file``: TOML with one table per row name (``[smallnet]\\nepochs = 10``); ``sets``: CLI
    overrides ``{row: {field: value}}`` applied after the file. Raises ``KeyError`` for an unknown row
    or field and ``ValueError`` for an override of a row that is not selected, or ``neurolm-official``
    without a ``checkpoint``.
    """
    known = {**DEFAULT_MODELS, **OPTIONAL_MODELS}
    chosen = list(names) if names else list(DEFAULT_MODELS)
    unknown = [n for n in chosen if n not in known]
    if unknown:
        raise KeyError(f"unknown model(s) {unknown}; known: {list(known)}")
    overrides: dict[str, dict[str, Any]] = {}
    if config_file is not None:
        for row, table in tomllib.loads(Path(config_file).read_text()).items():
            if not isinstance(table, dict):
                raise ValueError(f"{config_file}: top-level {row!r} must be a table [{row}]")
            overrides.setdefault(row, {}).update(table)
    for row, table in (sets or {}).items():
        overrides.setdefault(row, {}).update(table)
    stray = sorted(set(overrides) - set(chosen))
    if stray:
        raise ValueError(f"overrides for model(s) {stray} that are not selected ({chosen})")
    specs = [with_overrides(known[n], overrides.get(n, {})) for n in chosen]
    for spec in specs:
        if spec.name in OPTIONAL_MODELS and spec.kind == "neurolm" and not spec.config.checkpoint:
            raise ValueError(
                f"{spec.name} scores published files: add --set {spec.name}.checkpoint=VQ.pt,NeuroLM-B.pt"
            )
    return specs
