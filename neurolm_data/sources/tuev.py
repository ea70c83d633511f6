"""TUEV: the TUH EEG Events Corpus (six event classes), the NeuroLM "TUEV" task.

Layout (TUEV v2.0.x; docs/neurolm-reference.md §2.3, FIXTURES.md §2.1): ``edf/{train,eval}/<subject>/<name>.edf`` with a
partner ``<name>.rec`` beside each EDF (the ``.htk`` feature files TUEV also ships are ignored). ``root`` is
the folder holding ``edf/``. The subject is the folder name; ``official_split`` the split folder.

Annotations: each ``.rec`` row is ``channel_index,start_s,stop_s,label_id`` (label ids 1..6 = spsw, gped,
pled, eyem, artf, bckg; channel indices into the 22-channel TCP montage). ``read`` turns them into ONE event
per event time (``neurolm_data.annotations.tuev_events``), fixing the per-channel near-duplicates of the
official maker (reference §2.3, §9.15); event classes are ``label_id - 1`` (0 spsw ... 5 bckg). A malformed row, an
unknown label id, an event past the end of the signal or overlapping events on one channel cost only those
events: each is listed in the ledger's ``warnings`` column and its event time gives no window (on any channel).
A missing or unreadable ``.rec``, or one with no valid row, fails the recording with that reason.

Channels: the 23 TUAB channels (reference §2.3: "the same 23 monopolar channels as TUAB").
Notch: 60 Hz by default (TUH mains); ``notch_hz=50`` is the paper's TUEV setting (reference §1.1).

Citation: Harati A, Golmohammadi M, Lopez S, Obeid I, Picone J. "Improved EEG Event Classification Using
Differential Energy." IEEE Signal Processing in Medicine and Biology Symposium (2015),
doi:10.1109/SPMB.2015.7405421; and the TUH EEG corpus (Obeid & Picone 2016).
License: TUH EEG Corpus data-use agreement (registration with Temple NEDC; no redistribution).
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from neurolm_data.annotations import read_tuev_rec, tuev_events
from neurolm_data.readers import read_edf
from neurolm_data.sources._readers import check_options, duration_s, edf_files, notch_option, require_channels
from neurolm_data.sources.base import RawSignal, RecordingRef, Source, register_source
from neurolm_data.sources.tuab import TUAB_CHANNELS, TUH_CITATION, TUH_LICENSE, TUH_MAINS_HZ

#: Official split folders of TUEV.
TUEV_SPLITS: tuple[str, ...] = ("train", "eval")


@register_source
class TuevSource(Source):
    """TUEV v2 layout; 23 channels; one event per event time, classes 0..5 (spsw gped pled eyem artf bckg).

    Options:
        notch_hz: notch frequency (default 60, the TUH mains; 50 = the paper's TUEV maker, reference §1.1).
    """

    name = "tuev"
    mains_hz = TUH_MAINS_HZ
    channels = TUAB_CHANNELS
    min_duration_s = 5.0  # one 5-s TUEV window (reference §2.3)
    subject_namespace: ClassVar[str] = "tuh"
    citation = (
        "Harati A et al. Improved EEG Event Classification Using Differential Energy. IEEE SPMB 2015, "
        "doi:10.1109/SPMB.2015.7405421; " + TUH_CITATION
    )
    license = TUH_LICENSE

    def __init__(self, **options):
        check_options(self.name, options, {"notch_hz"})
        super().__init__(**options)
        self.mains_hz = notch_option(options, TUH_MAINS_HZ)

    def discover(self, root: Path) -> list[RecordingRef]:
        """Recordings ``edf/{train,eval}/<subject>/*.edf``; the partner is ``<same name>.rec``.

        Raises:
            FileNotFoundError: ``root`` is missing or holds no TUEV-layout EDF file.
        """
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"{root}: not a folder")
        refs = []
        for p in edf_files(root):
            parts = [x.lower() for x in p.relative_to(root).parts[:-1]]
            if not self._in_layout(parts):
                continue
            split = parts[-2]
            subject = p.parent.name
            run = p.stem[len(subject) + 1 :] if p.stem.startswith(subject + "_") else p.stem
            refs.append(
                RecordingRef(
                    source=self.name,
                    subject=subject,
                    session="",
                    run=run,
                    path=p,
                    official_split=split,
                    annotation_path=p.with_suffix(".rec"),
                )
            )
        if not refs:
            raise FileNotFoundError(f"{root}: no TUEV file (expected edf/{{train,eval}}/<subject>/*.edf)")
        return sorted(refs, key=lambda r: str(r.path))

    @staticmethod
    def _in_layout(parts: list[str]) -> bool:
        """Whether folder names (lower case) end in ``{train,eval}/<subject>``."""
        return len(parts) >= 2 and parts[-2] in TUEV_SPLITS

    def skipped(self, root: Path) -> list[tuple[Path, str]]:
        """EDF files under ``root`` not in a ``{train,eval}/<subject>/`` folder."""
        root = Path(root)
        return [
            (p, "path is outside the TUEV layout edf/{train,eval}/<subject>/*.edf")
            for p in edf_files(root)
            if not self._in_layout([x.lower() for x in p.relative_to(root).parts[:-1]])
        ]

    def read(self, ref: RecordingRef) -> RawSignal:
        """The 23 channels in µV plus one ``Event`` per event time from the ``.rec`` partner.

        Raises:
            RecordingError: unreadable EDF, a missing channel, or a missing ``.rec`` or one without a valid row
                (per-event problems go to ``sig.warnings``).
        """
        sig = require_channels(ref.path, read_edf(ref.path, channels=TUAB_CHANNELS), TUAB_CHANNELS, "TUEV")
        rec = ref.annotation_path or ref.path.with_suffix(".rec")
        sig.events = tuev_events(rec, read_tuev_rec(rec, duration_s=duration_s(sig), problems=sig.warnings))
        return sig
