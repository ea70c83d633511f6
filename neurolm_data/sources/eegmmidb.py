"""EEGMMIDB: PhysioNet EEG Motor Movement/Imagery Dataset, as a pre-training source ("Motor Movement/Imagery",
47.3 h of the NeuroLM pre-training corpus, reference §7).

Layout (PhysioNet ``eegmmidb/1.0.0``): ``files/S001/S001R01.edf`` ... ``S109/S109R14.edf``: BCI2000 EDF+,
64 channels at 160 Hz, labels padded with dots (``Fc5.``, ``Cz..``; the vocabulary normalizer strips them),
annotations ``T0`` (rest), ``T1``, ``T2`` (left/right fist or both fists/feet, depending on the run).
Subject = ``S001``, run = ``R01``. Every vocabulary channel is kept.

Events: the annotations as ``T0`` 0, ``T1`` 1, ``T2`` 2 with their text; they are markers for later tasks, not
used by pre-training, and not checked for overlap (the BCI2000 exports can overlap at run boundaries).
Notch: 60 Hz (recorded at the Wadsworth Center, New York, USA).

Citation: Schalk G, McFarland DJ, Hinterberger T, Birbaumer N, Wolpaw JR. "BCI2000: A General-Purpose
Brain-Computer Interface (BCI) System." IEEE Trans. Biomed. Eng. 51(6):1034-1043 (2004); PhysioNet EEGMMIDB
v1.0.0, doi:10.13026/C28G6P; Goldberger AL et al., Circulation 101(23):e215-e220 (2000).
License: Open Data Commons Attribution License v1.0 (ODC-By 1.0).

Download (``fetch_eegmmidb``, ``neurolm-data ingest eegmmidb ROOT --download``): MNE-Python's EEGBCI fetcher
(``mne.datasets.eegbci.load_data``) downloads each run from PhysioNet
(https://physionet.org/files/eegmmidb/1.0.0/) and checks it against the SHA-256 sums MNE ships for the release
(``mne/data/eegbci_checksums.txt``, PhysioNet's published sums); a file that does not match is refused. The
task ``mi`` needs only the imagery runs R04, R08, R12 (``MI_DOWNLOAD_RUNS``).
"""

from __future__ import annotations

import re
from pathlib import Path

from neurolm_data.readers import read_edf
from neurolm_data.sources._readers import check_options, duration_s, edf_files, notch_option
from neurolm_data.sources.base import Event, RawSignal, RecordingRef, Source, register_source

#: Run file name ``S001R01`` (PhysioNet EEGMMIDB).
RUN_NAME = re.compile(r"^(?P<subject>S\d{3})(?P<run>R\d{2})$", re.IGNORECASE)
#: BCI2000 event codes -> class (T0 rest, T1 and T2 the run's two movement/imagery targets).
EEGMMIDB_EVENTS: dict[str, int] = {"T0": 0, "T1": 1, "T2": 2}
#: Runs fetched by default: the left/right fist imagery runs (task ``mi``; PhysioNet EEGMMIDB "Experimental
#: Protocol": runs 4, 8 and 12).
MI_DOWNLOAD_RUNS: tuple[int, ...] = (4, 8, 12)
#: The release's subjects, S001-S109 (PhysioNet EEGMMIDB description).
EEGMMIDB_SUBJECTS: tuple[int, ...] = tuple(range(1, 110))
#: Mains frequency in the USA (60 Hz).
EEGMMIDB_MAINS_HZ: float = 60.0


@register_source
class EegmmidbSource(Source):
    """EEGMMIDB ``SxxxRyy.edf``; every vocabulary channel; T0/T1/T2 events (0/1/2).

    Options:
        notch_hz: notch frequency (default 60).
    """

    name = "eegmmidb"
    mains_hz = EEGMMIDB_MAINS_HZ
    channels = None
    citation = (
        "Schalk G et al. BCI2000: A General-Purpose Brain-Computer Interface (BCI) System. IEEE Trans. "
        "Biomed. Eng. 51(6):1034-1043 (2004); PhysioNet EEGMMIDB, doi:10.13026/C28G6P"
    )
    license = "Open Data Commons Attribution License v1.0 (ODC-By 1.0)"

    def __init__(self, **options):
        check_options(self.name, options, {"notch_hz"})
        super().__init__(**options)
        self.mains_hz = notch_option(options, EEGMMIDB_MAINS_HZ)

    def discover(self, root: Path) -> list[RecordingRef]:
        """Every ``SxxxRyy.edf`` under ``root``.

        Raises:
            FileNotFoundError: ``root`` is missing or holds no EEGMMIDB run file.
        """
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"{root}: not a folder")
        refs = []
        for p in edf_files(root):
            m = RUN_NAME.match(p.stem)
            if m:
                refs.append(
                    RecordingRef(
                        source=self.name,
                        subject=m["subject"].upper(),
                        session="",
                        run=m["run"].upper(),
                        path=p,
                    )
                )
        if not refs:
            raise FileNotFoundError(f"{root}: no EEGMMIDB run file (SxxxRyy.edf)")
        return refs

    def read(self, ref: RecordingRef) -> RawSignal:
        """Every vocabulary EEG channel in µV at 160 Hz with the T0/T1/T2 events.

        Raises:
            RecordingError: unreadable EDF.
        """
        sig = read_edf(ref.path, annotations=True)
        end = duration_s(sig) + 1e-6
        sig.events = [
            Event(e.onset_s, e.duration_s, EEGMMIDB_EVENTS[e.description], e.description)
            for e in sig.events
            if e.description in EEGMMIDB_EVENTS and e.onset_s + e.duration_s <= end
        ]
        return sig


def mne_eegbci_sums() -> dict[str, str]:
    """``{"S001/S001R04.edf": sha256, ...}`` from MNE's registry of PhysioNet's EEGMMIDB 1.0.0 sums
    (``mne/data/eegbci_checksums.txt``), the sums ``fetch_eegmmidb`` checks downloads against."""
    import mne

    text = (Path(mne.__file__).parent / "data" / "eegbci_checksums.txt").read_text()
    return {name: digest for name, digest in (line.split() for line in text.splitlines() if line.strip())}


def fetch_eegmmidb(
    dest: str | Path, subjects: tuple[int, ...] = EEGMMIDB_SUBJECTS, runs: tuple[int, ...] = MI_DOWNLOAD_RUNS
) -> Path:
    """Download EEGMMIDB runs from PhysioNet into ``dest`` (PhysioNet's layout ``SXXX/SXXXRYY.edf`` under
    MNE's ``MNE-eegbci-data/files/eegmmidb/1.0.0`` folder), each verified against its published SHA-256 (MNE's registry);
    files already there with the right sum are not downloaded again.

    Returns:
        The folder to pass to ``neurolm-data ingest eegmmidb``.

    Raises:
        ValueError (from pooch): a file whose sha256 differs from the published sum. Network errors: no
        connection to physionet.org.
    """
    from mne.datasets import eegbci

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    paths = eegbci.load_data(list(subjects), list(runs), path=str(dest), update_path=False, verbose="error")
    if not paths:
        raise FileNotFoundError(f"{dest}: nothing downloaded for subjects {subjects} runs {runs}")
    return Path(paths[0]).parents[1]  # .../S001/S001R04.edf -> the folder holding the subject folders
