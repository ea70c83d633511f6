"""``adhd``: "EEG data for ADHD / Control children" (IEEE DataPort, 2020), 121 children, one recording each.

Layout (the release as published): ``ADHD_part1/``, ``ADHD_part2/`` (61 children with ADHD, DSM-IV diagnosed)
and ``Control_part1/``, ``Control_part2/`` (60 typically developing children), anywhere under the root (the
release's ``Matlab/`` folder or flat), one ``<child>.mat`` per child. Each file is MATLAB v5 and holds one
variable named after the file (``v10p.mat`` holds ``v10p``) of shape ``(n_samples, 19)``, stored as int16 in
most files and float64 in some (as released); values are µV. Sampling rate 128 Hz; 62 to 338 s per child.
Column order (the release's ``Channel_Labels.docx``): Fp1, Fp2, F3, F4, C3, C4, P3, P4, O1, O2, F7, F8, T7,
T8, P7, P8, Fz, Cz, Pz; reference linked earlobes (A1/A2). No event markers: every child did the same visual
attention task (counting cartoon characters).

Labels: one per child from the folder: control 0, ADHD 1. Subject = the file stem (``v10p``); two children
with the same stem in different parts would be an error (the release has none).

Sampling rate: 128 Hz is below the 150-Hz minimum that the pipeline's 75-Hz low-pass needs (Nyquist), so
``read`` up-samples to 200 Hz with ``scipy.signal.resample_poly(x, 25, 16)`` (a polyphase Kaiser-window
interpolation, exact ratio 200/128 = 25/16) before preprocessing; it adds no content above 64 Hz.
``read_native`` returns the file's own 128-Hz values. Notch: 50 Hz (recorded in Tehran, Iran).

Citation: Ali Motie Nasrabadi, Armin Allahverdy, Mehdi Samavati, Mohammad Reza Mohammadi, "EEG data for
ADHD / Control children", IEEE DataPort, 2020, doi:10.21227/rzfh-zn36.
License: open access on IEEE DataPort (free to download with an IEEE account; cite the DOI). No checksums are
published and the download needs a login, so there is no ``--download``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import ClassVar

import numpy as np

from neurolm_data.sources._readers import check_options, notch_option
from neurolm_data.sources.base import RawSignal, RecordingError, RecordingRef, Source, register_source

#: Column order of every file (the release's ``Channel_Labels.docx``), 10-10 names.
ADHD_CHANNELS: tuple[str, ...] = (
    "Fp1",
    "Fp2",
    "F3",
    "F4",
    "C3",
    "C4",
    "P3",
    "P4",
    "O1",
    "O2",
    "F7",
    "F8",
    "T7",
    "T8",
    "P7",
    "P8",
    "Fz",
    "Cz",
    "Pz",
)
#: Sampling rate of the release, Hz (dataset description).
ADHD_SFREQ: float = 128.0
#: Rate ``read`` up-samples to (the pipeline's rate), and the polyphase ratio 200/128 = 25/16.
UPSAMPLED_SFREQ: float = 200.0
UP, DOWN = 25, 16
#: Mains frequency in Iran (50 Hz).
ADHD_MAINS_HZ: float = 50.0
#: Folder name -> (label, group): ``ADHD_part1`` ... -> 1 ADHD, ``Control_part1`` ... -> 0 control.
GROUP_FOLDER = re.compile(r"^(?P<group>ADHD|Control)_part\d+$", re.IGNORECASE)
GROUP_LABELS: dict[str, int] = {"control": 0, "adhd": 1}


@register_source
class AdhdSource(Source):
    """IEEE DataPort ADHD/Control children: ``{ADHD,Control}_partN/<child>.mat``; label control 0, ADHD 1.

    Options:
        notch_hz: notch frequency (default 50).
    """

    name: ClassVar[str] = "adhd"
    mains_hz: ClassVar[float] = ADHD_MAINS_HZ
    channels: ClassVar[tuple[str, ...]] = tuple(c.upper() for c in ADHD_CHANNELS)
    #: One window of the ``adhd`` task: 4 s.
    min_duration_s: ClassVar[float] = 4.0
    citation: ClassVar[str] = (
        "Motie Nasrabadi A, Allahverdy A, Samavati M, Mohammadi MR. EEG data for ADHD / "
        "Control children. IEEE DataPort (2020), doi:10.21227/rzfh-zn36"
    )
    license: ClassVar[str] = "open access (IEEE DataPort); cite the DOI"

    def __init__(self, **options):
        check_options(self.name, options, {"notch_hz"})
        super().__init__(**options)
        self.mains_hz = notch_option(options, ADHD_MAINS_HZ)

    def discover(self, root: Path) -> list[RecordingRef]:
        """Every ``*.mat`` inside an ``ADHD_partN`` or ``Control_partN`` folder under ``root``, sorted by path.

        Raises:
            FileNotFoundError: ``root`` is missing or holds no such file.
            ValueError: two files share a child id (file stem).
        """
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"{root}: not a folder")
        refs, seen = [], {}
        for p in sorted(root.rglob("*.mat")):
            m = GROUP_FOLDER.match(p.parent.name)
            if not m or not p.is_file():
                continue
            group = m["group"].lower()
            subject = p.stem
            if subject in seen:
                raise ValueError(f"{p}: child id {subject!r} also in {seen[subject]}")
            seen[subject] = p
            refs.append(
                RecordingRef(
                    source=self.name,
                    subject=subject,
                    session="",
                    run="",
                    path=p,
                    label=GROUP_LABELS[group],
                    extra={"group": group, "folder": p.parent.name},
                )
            )
        if not refs:
            raise FileNotFoundError(
                f"{root}: no ADHD/Control .mat file (ADHD_partN/*.mat, Control_partN/*.mat)"
            )
        return refs

    def skipped(self, root: Path) -> list[tuple[Path, str]]:
        """``.mat`` files outside an ``ADHD_partN`` / ``Control_partN`` folder (no label can be given)."""
        return [
            (p, "not inside an ADHD_partN or Control_partN folder: no diagnosis label")
            for p in sorted(Path(root).rglob("*.mat"))
            if p.is_file() and not GROUP_FOLDER.match(p.parent.name)
        ]

    def read_native(self, ref: RecordingRef) -> RawSignal:
        """The file's values as float64 µV ``(19, n_samples)`` at 128 Hz, channels in ``ADHD_CHANNELS`` order.

        Raises:
            RecordingError: unreadable MAT file, no variable, or a variable that is not ``(n, 19)`` numbers.
        """
        from scipy.io import loadmat
        from scipy.io.matlab import MatReadError

        try:
            mat = loadmat(ref.path)
        except (MatReadError, ValueError, OSError, TypeError) as e:
            raise RecordingError(ref.path, f"cannot read MAT file: {e}") from None
        names = [k for k in mat if not k.startswith("__")]
        name = ref.path.stem if ref.path.stem in names else (names[0] if len(names) == 1 else None)
        if name is None:
            raise RecordingError(ref.path, f"expected one variable named {ref.path.stem!r}, found {names}")
        x = mat[name]
        if (
            not isinstance(x, np.ndarray)
            or x.ndim != 2
            or x.shape[1] != len(ADHD_CHANNELS)
            or x.dtype.kind not in "iuf"
        ):
            raise RecordingError(
                ref.path,
                f"variable {name!r} is {getattr(x, 'dtype', type(x))} "
                f"{getattr(x, 'shape', '')}, expected (n_samples, 19) numbers",
            )
        data = np.ascontiguousarray(x.T, dtype=np.float64)  # (19, n) µV
        if not np.all(np.isfinite(data)):
            raise RecordingError(ref.path, "non-finite values in the signal")
        return RawSignal(
            data=data,
            ch_names=list(ADHD_CHANNELS),
            sfreq=ADHD_SFREQ,
            meta={"reader": "scipy.io.loadmat", "variable": name, "dtype": str(x.dtype)},
        )

    def read(self, ref: RecordingRef) -> RawSignal:
        """``read_native`` up-sampled to 200 Hz (``resample_poly(x, 25, 16)``): float64 µV ``(19, ceil(n*25/16))``.

        Raises:
            RecordingError: see ``read_native``.
        """
        from scipy.signal import resample_poly

        sig = self.read_native(ref)
        sig.data = resample_poly(sig.data, UP, DOWN, axis=1)
        sig.sfreq = UPSAMPLED_SFREQ
        sig.meta["upsampled_from_hz"] = ADHD_SFREQ
        return sig
