"""Shared helpers for the corpus sources of issue 4 (TUAB, TUEV, TUSL, TUSZ, HMC, Sleep-EDF, EEGMMIDB, Siena,
SEED): TUH file-name ids, checking a source's fixed channel list, and option checking. EDF decoding is
``neurolm_data.readers.read_edf``. Not a source itself (no ``@register_source``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from neurolm_data.channels import map_channels, normalize_channel
from neurolm_data.sources.base import RawSignal, RecordingError

#: TUH file names: ``<subject>_<session>_<token>`` (``aaaaaaaa_s001_t000``, older ``00000021_s004_t000``);
#: TUH EEG corpus documentation (v2.0) and ``tuh-nedc/README.md``.
TUH_NAME = re.compile(r"^(?P<subject>[A-Za-z0-9]+)_(?P<session>s\d+)_(?P<run>t\d+)$")


def duration_s(sig: RawSignal) -> float:
    """Signal duration in seconds: ``n_samples / sfreq`` (does not decode integer samples)."""
    return sig.n_samples / sig.sfreq


def require_channels(path: Path, sig: RawSignal, wanted: tuple[str, ...], corpus: str) -> RawSignal:
    """Check that ``sig`` (read with ``channels=wanted``) holds every one of ``wanted``, in that order.

    Args:
        wanted: canonical ``standard_1020`` names, e.g. the 23 TUAB channels (reference §2.2).
        corpus: corpus name for the error message.

    Returns:
        ``sig`` unchanged.

    Raises:
        RecordingError: one or more of ``wanted`` is absent; the message lists them and the channels dropped.
    """
    have = [normalize_channel(c).name for c in sig.ch_names]
    missing = [w for w in wanted if w not in have]
    if missing or have != list(wanted):
        raise RecordingError(
            path,
            f"missing channel(s) {missing} of the {len(wanted)} {corpus} channels "
            f"(kept {sig.ch_names}; dropped {[d for d, _ in sig.dropped]})",
        )
    return sig


def select_channels(path: Path, sig: RawSignal, wanted: tuple[str, ...], corpus: str) -> RawSignal:
    """Keep exactly ``wanted`` (canonical names, in that order) from a signal holding other channels too
    (CNT, MAT inputs); every other channel goes to ``dropped`` with its reason.

    Raises:
        RecordingError: one or more of ``wanted`` is absent (the message lists them).
    """
    cm = map_channels(sig.ch_names, keep=list(wanted))
    missing = [w for w in wanted if w not in cm.names]
    if missing:
        raise RecordingError(
            path, f"missing channel(s) {missing} of the {len(wanted)} {corpus} channels (has {sig.ch_names})"
        )
    return RawSignal(
        data=sig.data[cm.picks],
        ch_names=[sig.ch_names[p] for p in cm.picks],
        sfreq=sig.sfreq,
        events=list(sig.events),
        dropped=list(sig.dropped) + list(cm.dropped),
        meta=dict(sig.meta),
    )


def notch_option(options: dict[str, Any], default_hz: float) -> float:
    """The ``notch_hz`` source option (mains frequency for the notch), validated; ``default_hz`` if absent."""
    v = options.get("notch_hz", default_hz)
    try:
        v = float(v)
    except (TypeError, ValueError):
        raise ValueError(f"notch_hz must be a number of Hz, got {v!r}") from None
    if v < 0:
        raise ValueError(f"notch_hz must be >= 0, got {v}")
    return v


def check_options(name: str, options: dict[str, Any], allowed: set[str]) -> None:
    """Raise ValueError naming the source and the allowed options if an unknown option is given."""
    bad = sorted(set(options) - allowed)
    if bad:
        raise ValueError(f"source {name!r}: unknown option(s) {bad} (allowed: {sorted(allowed)})")


def tuh_ids(path: Path) -> tuple[str, str, str]:
    """``(subject, session, run)`` from a TUH file name (``aaaaaaaa_s001_t000.edf``); for names without
    session/token (TUEV ``aaaaaaar_00000001.edf``) the subject is the part before the first ``_`` and the run
    the rest."""
    m = TUH_NAME.match(path.stem)
    if m:
        return m["subject"], m["session"], m["run"]
    head, _, tail = path.stem.partition("_")
    return head, "", tail


def edf_files(root: Path) -> list[Path]:
    """Every ``*.edf`` (any case) under ``root``, sorted by path."""
    return sorted(p for p in Path(root).rglob("*") if p.suffix.lower() == ".edf" and p.is_file())
