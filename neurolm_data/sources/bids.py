"""``bids``: an EEG-BIDS dataset (OpenNeuro and most public EEG datasets), read through mne-bids.

Layout (BIDS specification, "Electroencephalography",
https://bids-specification.readthedocs.io/en/stable/modality-specific-files/electroencephalography.html)::

    ROOT/participants.tsv                                   one row per participant (participant_id, age, sex, ...)
    ROOT/sub-<label>/[ses-<label>/]eeg/sub-<label>[_ses-<label>]_task-<label>[_run-<index>]_eeg.<ext>
    ROOT/sub-<label>/[ses-<label>/]eeg/..._events.tsv       onset, duration, trial_type (or value) per event
    ROOT/sub-<label>/[ses-<label>/]eeg/..._channels.tsv     name, type, units, status per channel

``<ext>`` is one of the EEG-BIDS data formats: ``.edf``, ``.bdf``, ``.vhdr`` (BrainVision), ``.set`` (EEGLAB),
plus ``.fif``. Each data file is one recording: subject = the ``sub-`` label, session = the ``ses-`` label, run =
task and run. ``mne_bids.read_raw_bids`` reads it with the types of ``channels.tsv`` (channels marked ``bad``
are dropped and listed) and the events of ``events.tsv`` as annotations (their ``trial_type``). The
participant's row of ``participants.tsv`` is kept in the manifest (``extra["participant"]``), and
``label_column`` makes one of its columns the recording label.

Channels, events mapping, notch and slow recordings as in the ``mne`` source (``neurolm_data.sources.mne_folder``).
Citation and licence: those of the dataset (its ``dataset_description.json``).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, ClassVar

from neurolm_data.sources.base import (
    RawSignal,
    RecordingError,
    RecordingRef,
    Source,
    register_source,
    safe_key,
)
from neurolm_data.sources.mne_folder import _as_bool, parse_mapping, raw_to_signal

#: EEG data formats allowed by EEG-BIDS (``.edf``, ``.bdf``, ``.vhdr``, ``.set``) plus MEG/EEG ``.fif``.
EXTENSIONS: tuple[str, ...] = (".edf", ".bdf", ".vhdr", ".set", ".fif")
_OPTIONS = {"notch_hz", "events", "rename", "merge_synonyms", "label_column", "labels", "task"}


def read_participants(root: Path) -> dict[str, dict[str, str]]:
    """``participants.tsv`` as ``{"sub-01": {"age": "34", ...}}`` ({} when the file is absent).

    Raises:
        ValueError: the file has no ``participant_id`` column (names the file).
    """
    path = root / "participants.tsv"
    if not path.is_file():
        return {}
    with path.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    if rows and "participant_id" not in rows[0]:
        raise ValueError(f"{path}: no participant_id column")
    return {r["participant_id"]: {k: v for k, v in r.items() if k != "participant_id"} for r in rows}


@register_source
class BidsSource(Source):
    """An EEG-BIDS dataset.

    Options (``-o KEY=VALUE``):
        notch_hz: mains frequency, Hz (default 50; 60 for the Americas).
        task: only this BIDS task (default: every task).
        events: ``events.tsv`` trial_type -> integer label (``rest:0,task:1`` or a ``.json`` file).
        rename: channel name -> standard_1020 name, for datasets with numbered electrodes.
        label_column, labels: a ``participants.tsv`` column whose value, mapped by ``labels``
            (``control:0,adhd:1``), is each recording's label; a participant whose value is unmapped fails
            discovery with a message naming it.
        merge_synonyms: map T3/T4/T5/T6 to T7/T8/P7/P8 (default false).
    """

    name: ClassVar[str] = "bids"
    mains_hz: ClassVar[float] = 50.0
    min_duration_s: ClassVar[float] = 1.0
    citation: ClassVar[str] = "(the dataset's dataset_description.json)"
    license: ClassVar[str] = "(the dataset's own licence)"

    def __init__(self, **options: Any):
        unknown = sorted(set(options) - _OPTIONS)
        if unknown:
            raise ValueError(f"source 'bids': unknown option(s) {unknown} (allowed: {sorted(_OPTIONS)})")
        super().__init__(**options)
        if "notch_hz" in options:
            self.mains_hz = float(options["notch_hz"])
        self.events = parse_mapping(options.get("events"), "events", integer=True)
        self.rename = parse_mapping(options.get("rename"), "rename", integer=False)
        self.labels = parse_mapping(options.get("labels"), "labels", integer=True)
        self.label_column = options.get("label_column") or None
        if bool(self.label_column) != bool(self.labels):
            raise ValueError("source 'bids': label_column and labels go together")
        self.task = options.get("task") or None
        self.merge_synonyms = _as_bool(options.get("merge_synonyms", False))

    def discover(self, root: Path) -> list[RecordingRef]:
        """Every ``sub-*/[ses-*/]eeg/*_eeg.<ext>`` under ``root`` (mne-bids' ``find_matching_paths``), sorted.

        Raises:
            FileNotFoundError: ``root`` is missing or holds no EEG recording. ValueError: a participant with no
            label under ``label_column``/``labels``.
        """
        from mne_bids import find_matching_paths

        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"BIDS folder {root} does not exist")
        paths = find_matching_paths(
            root, tasks=self.task, datatypes="eeg", suffixes="eeg", extensions=list(EXTENSIONS)
        )
        paths = sorted(paths, key=lambda b: Path(b.fpath).relative_to(root).as_posix())
        if not paths:
            raise FileNotFoundError(
                f"no EEG-BIDS recording (sub-*/[ses-*/]eeg/*_eeg{{{','.join(EXTENSIONS)}}}) under {root}"
            )
        participants = read_participants(root)
        refs = []
        for b in paths:
            pid = f"sub-{b.subject}"
            info = participants.get(pid, {})
            label = None
            if self.label_column:
                value = info.get(self.label_column)
                if value not in self.labels:
                    raise ValueError(
                        f"{root / 'participants.tsv'}: {pid} has {self.label_column}={value!r}, "
                        f"not one of {sorted(self.labels)}"
                    )
                label = self.labels[value]
            run = "_".join(
                x
                for x in (
                    f"task-{b.task}" if b.task else "",
                    f"run-{b.run}" if b.run else "",
                    f"acq-{b.acquisition}" if b.acquisition else "",
                )
                if x
            )
            refs.append(
                RecordingRef(
                    source=self.name,
                    subject=safe_key(pid),
                    session=safe_key(f"ses-{b.session}") if b.session else "",
                    run=safe_key(run),
                    path=Path(b.fpath),
                    label=label,
                    extra={
                        "bids_path": Path(b.fpath).relative_to(root).as_posix(),
                        "participant": info,
                        "task": b.task,
                    },
                )
            )
        return refs

    def read(self, ref: RecordingRef) -> RawSignal:
        """The recording with ``channels.tsv`` types and ``events.tsv`` events (``mne_bids.read_raw_bids``).

        Raises:
            RecordingError: mne-bids cannot read it, no channel maps to the vocabulary, non-finite samples.
        """
        from mne_bids import get_bids_path_from_fname, read_raw_bids

        try:
            bids_path = get_bids_path_from_fname(ref.path)
            raw = read_raw_bids(bids_path, verbose="error")
            raw.load_data(verbose="error")
        except Exception as e:  # noqa: BLE001 - mne-bids raises many types for bad datasets
            raise RecordingError(ref.path, f"mne-bids cannot read it: {type(e).__name__}: {e}") from None
        bads = set(raw.info["bads"])
        if bads:
            raw.drop_channels(sorted(bads))
        sig = raw_to_signal(
            raw,
            ref.path,
            rename=self.rename,
            events=self.events,
            merge_synonyms=self.merge_synonyms,
            meta={"reader": "mne-bids", "format": ref.path.suffix.lower().lstrip(".")},
        )
        sig.dropped += [(b, "marked bad in channels.tsv") for b in sorted(bads)]
        return sig
