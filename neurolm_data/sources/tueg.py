"""``tueg``: the TUH EEG corpus (TUEG v2) in its distributed layout, unlabeled (pre-training, reference §2.1).

Layout: ``edf/<group>/<subject>/<session>/<montage>/<subject>_<sNNN>_<tNNN>.edf``, e.g.
``edf/000/aaaaaaaa/s001_2015/01_tcp_ar/aaaaaaaa_s001_t000.edf`` (TUH EEG corpus documentation v2.0;
FIXTURES.md §2.1). Subject, session (folder name) and run (token) come from the path; the montage folder
(``01_tcp_ar`` averaged reference, ``02_tcp_le`` linked ears, ``03_tcp_ar_a`` averaged reference without
A1/A2) is kept in ``extra`` and checked against the channel names (``EEG FP1-REF`` / ``EEG FP1-LE``), which
give the manifest's ``montage`` column. **LE files are kept**; the official pre-training maker skips them
(reference §2.1). Mains is 60 Hz (US; the official TUH pre-training maker's notch, reference §1.1).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, ClassVar

from neurolm_data.channels import normalize_channel
from neurolm_data.readers import read_edf
from neurolm_data.sources.base import RawSignal, RecordingRef, Source, register_source

_LAYOUT = re.compile(
    r"(?:^|/)edf/(?P<group>[^/]+)/(?P<subject>[A-Za-z0-9]+)/(?P<session>s\d{3}(?:_[0-9_]+)?)/"
    r"(?P<montage>\d{2}_tcp_[a-z_]+)/(?P=subject)_(?P<sess>s\d{3})_(?P<token>t\d{3})\.edf$",
    re.IGNORECASE,
)

#: Montage folder -> the reference label its channel names carry (TUH EEG corpus documentation).
MONTAGE_REFERENCE: dict[str, str] = {"01_tcp_ar": "REF", "02_tcp_le": "LE", "03_tcp_ar_a": "REF"}

_AGE = re.compile(rb"Age:(\d+)")


@register_source
class TuegSource(Source):
    """TUH EEG (TUEG v2). Options: ``notch_hz`` (default 60, TUH mains and the official TUEG maker's notch)."""

    name: ClassVar[str] = "tueg"
    mains_hz: ClassVar[float] = 60.0
    channels: ClassVar[tuple[str, ...] | None] = None
    min_duration_s: ClassVar[float] = 1.0
    citation: ClassVar[str] = (
        "Obeid & Picone, The Temple University Hospital EEG Data Corpus, Front. Neurosci. 10:196, 2016"
    )
    license: ClassVar[str] = "TUH EEG data-sharing agreement (NEDC)"

    def __init__(self, **options: Any):
        unknown = sorted(set(options) - {"notch_hz"})
        if unknown:
            raise ValueError(f"source 'tueg': unknown option(s) {unknown} (allowed: ['notch_hz'])")
        super().__init__(**options)
        if "notch_hz" in options:
            self.mains_hz = float(options["notch_hz"])

    @staticmethod
    def _edfs(root: Path) -> list[tuple[str, Path]]:
        return sorted(
            (p.relative_to(root).as_posix(), p)
            for p in root.rglob("*")
            if p.suffix.lower() == ".edf" and p.is_file()
        )

    def discover(self, root: Path) -> list[RecordingRef]:
        """Every EDF that follows the TUEG layout under ``root`` (the folder holding ``edf/``), sorted by path."""
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"TUEG root {root} does not exist")
        refs = []
        for rel, p in self._edfs(root):
            m = _LAYOUT.search(rel)
            if not m or not m["session"].lower().startswith(m["sess"].lower()):
                continue
            refs.append(
                RecordingRef(
                    source=self.name,
                    subject=m["subject"],
                    session=m["session"],
                    run=m["token"],
                    path=p,
                    extra={"group": m["group"], "montage_folder": m["montage"].lower()},
                )
            )
        if not refs:
            raise FileNotFoundError(
                f"no EDF in the TUEG layout (edf/NNN/subject/sNNN_YYYY/NN_tcp_xx/"
                f"subject_sNNN_tNNN.edf) under {root}"
            )
        return refs

    def skipped(self, root: Path) -> list[tuple[Path, str]]:
        """EDF files under ``root`` outside the TUEG layout."""
        out = []
        for rel, p in self._edfs(Path(root)):
            m = _LAYOUT.search(rel)
            if not m or not m["session"].lower().startswith(m["sess"].lower()):
                out.append(
                    (
                        p,
                        "path does not follow the TUEG layout "
                        "edf/NNN/subject/sNNN_YYYY/NN_tcp_xx/subject_sNNN_tNNN.edf",
                    )
                )
        return out

    def read(self, ref: RecordingRef) -> RawSignal:
        """Every vocabulary EEG channel at the EEG rate, µV; ``meta`` gets the age from the TUH patient field.

        Names whose reference contradicts the montage folder (``-LE`` names in ``01_tcp_ar``) are kept; the
        manifest's ``montage`` column follows the names and ``extra.reader.montage_mismatch`` flags the conflict.

        Raises:
            RecordingError: unreadable file or no usable channel (see ``read_edf``).
        """
        sig = read_edf(ref.path)
        expected = MONTAGE_REFERENCE.get(ref.extra.get("montage_folder", ""))
        refs = {normalize_channel(c).reference for c in sig.ch_names}
        if expected is not None and refs != {expected}:
            sig.meta["montage_mismatch"] = (
                f"channel references {sorted(refs)} but folder "
                f"{ref.extra['montage_folder']} implies -{expected}"
            )
        with open(ref.path, "rb") as f:
            m = _AGE.search(f.read(256)[8:88])
        if m:
            sig.meta["age"] = int(m.group(1))
        return sig
