"""Annotation parsers for the labelled corpora: TUEV ``.rec``, TUSL/TUSZ ``.tse``/``.tse_agg``/``.tse_bi``,
TUSZ/TUSL v2 ``.csv``/``.csv_bi``, TUH ``.lbl``, HMC ``_sleepscoring.edf``/``.txt``, Sleep-EDF hypnograms and the
SEED trial table (``docs/neurolm-reference.md`` §2.3–§2.7; the file formats are those of ``eeg-samples/FIXTURES.md`` §2 and
the real files in ``eeg-samples/tuh-nedc``, ``hmc`` and ``sleep-edf``).

Every parser works in seconds from the recording start and returns plain rows (``Segment``: onset, stop, label
text, channel); the ``*_events`` helpers turn rows into the task's integer-labelled ``Event`` list of
``neurolm_data.sources.base``. Malformed input raises ``_fail(path, reason)`` naming the file and the
problem, so that ingest records it in the ledger and goes on with the rest of the corpus. The problems checked
everywhere are: an unreadable or empty file, a row that does not parse, an unknown label, an interval with
``stop <= start`` or a negative onset, an event past the end of the signal (when the signal duration is known),
and overlapping events (per channel for channel-based files, per file for term-based files).

Strict or per event: by default a problem raises. Given a ``problems`` list (what the TUEV, TUSL and HMC sources
pass), a problem that concerns one event (a malformed row, an unknown label, an overlap, an event past the end)
is appended to the list, naming the file and the event, and that event (both events of an overlap) is left out;
the file fails whole only when it cannot be read at all or no valid event remains. Ingest writes the problems
to the ledger's ``warnings`` column and keeps the recording's valid windows.

Times are compared with a tolerance of ``TIME_TOL_S`` (10 ms): TUH writes 4 decimals and EDF durations are whole
data records, so equal boundaries can differ in the last printed digit.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import numpy as np

#: Tolerance in seconds when comparing interval boundaries (TUH files print 4 decimals; 10 ms is 2.5 samples
#: at 250 Hz, far below any annotation's resolution).
TIME_TOL_S: float = 0.01

# ------------------------------------------------------------------------------------------------ vocabularies

#: TUEV ``.rec`` label ids (TUEV v2.0.0 documentation; ``docs/neurolm-reference.md`` §2.3). Class = id - 1, as the
#: official loader's ``int(label[0] - 1)``.
TUEV_LABELS: dict[int, str] = {1: "spsw", 2: "gped", 3: "pled", 4: "eyem", 5: "artf", 6: "bckg"}

#: TUEV channel indices 0..21: the 22-channel TCP montage in the order of ``tuh-nedc/test.lbl``
#: (FIXTURES.md §2.1: "Channel indices 0..21 follow the TCP montage order").
TCP_MONTAGE: tuple[str, ...] = (
    "FP1-F7",
    "F7-T3",
    "T3-T5",
    "T5-O1",
    "FP2-F8",
    "F8-T4",
    "T4-T6",
    "T6-O2",
    "A1-T3",
    "T3-C3",
    "C3-CZ",
    "CZ-C4",
    "C4-T4",
    "T4-A2",
    "FP1-F3",
    "F3-C3",
    "C3-P3",
    "P3-O1",
    "FP2-F4",
    "F4-C4",
    "C4-P4",
    "P4-O2",
)

#: TUSL classes (official ``prepare_TUSL.py``: ``{'bckg': 0, 'seiz': 1, 'slow': 2}``; reference §2.4).
TUSL_CLASSES: dict[str, int] = {"bckg": 0, "seiz": 1, "slow": 2}

#: TUSZ seizure types (TUSZ v2 documentation, the ``symbols`` of ``tuh-nedc/test.lbl`` 7..18). In the binary
#: (``_bi``) files they all read ``seiz``.
TUSZ_SEIZURE_TYPES: frozenset[str] = frozenset(
    {"seiz", "fnsz", "gnsz", "spsz", "cpsz", "absz", "tnsz", "cnsz", "tcsz", "atsz", "mysz", "nesz"}
)
#: TUSZ binary classes: background 0, any seizure type 1.
TUSZ_CLASSES: dict[str, int] = {"bckg": 0, **{t: 1 for t in sorted(TUSZ_SEIZURE_TYPES)}}

#: HMC AASM stages (official ``prepare_HMC.py``: W=0, N1=1, N2=2, N3=3, R=4; reference §2.5).
HMC_STAGES: dict[str, int] = {
    "Sleep stage W": 0,
    "Sleep stage N1": 1,
    "Sleep stage N2": 2,
    "Sleep stage N3": 3,
    "Sleep stage R": 4,
}
#: HMC scoring entries that are not stages and are skipped (zero-duration markers; the real SN001 file has
#: ``Lights off@@EEG F4-A1`` and ``Lights on@@EEG Fpz-Cz``). Matched on the part before ``@@``.
HMC_MARKERS: frozenset[str] = frozenset({"Lights off", "Lights on"})
#: HMC / Sleep-EDF epoch length in seconds (AASM and R&K scoring epoch; reference §2.5).
SLEEP_EPOCH_S: float = 30.0

#: Sleep-EDF R&K hypnogram labels -> AASM five classes (W, N1, N2, N3, R). R&K stages 3 and 4 merge into N3
#: (AASM 2007 rule). ``?`` and ``Movement time`` are unscored and skipped (Sleep-EDF Expanded documentation).
SLEEP_EDF_STAGES: dict[str, int] = {
    "Sleep stage W": 0,
    "Sleep stage 1": 1,
    "Sleep stage 2": 2,
    "Sleep stage 3": 3,
    "Sleep stage 4": 3,
    "Sleep stage R": 4,
}
SLEEP_EDF_UNSCORED: frozenset[str] = frozenset({"Sleep stage ?", "Movement time"})

#: SEED trial boundaries in seconds, the same for every session (official ``prepare_SEED.py``; reference §2.7).
#: The end second is INCLUSIVE: a trial covers ``[start, end + 1)`` s. Only then do 4-s windows give the
#: official 855 windows per session and 22,815 / 7,965 / 7,695 for trials 0-8 / 9-11 / 12-14 over 45 sessions
#: (with ``[start, end)`` it would be 853 per session). ``seed_trials`` applies the + 1.
SEED_TRIAL_START_S: tuple[int, ...] = (
    24,
    289,
    550,
    782,
    1049,
    1260,
    1483,
    1747,
    1993,
    2283,
    2550,
    2812,
    3072,
    3332,
    3598,
)
SEED_TRIAL_END_S: tuple[int, ...] = (
    264,
    526,
    757,
    1023,
    1235,
    1458,
    1722,
    1967,
    2259,
    2525,
    2788,
    3046,
    3308,
    3573,
    3806,
)
#: SEED emotion per trial (reference §2.7: ``H N S S N H S N H H N S N H S``).
SEED_TRIAL_EMOTIONS: tuple[str, ...] = tuple("HNSSNHSNHHNSNHS")
#: SEED classes: H (positive) 0, N (neutral) 1, S (negative) 2 (reference §2.7).
SEED_CLASSES: dict[str, int] = {"H": 0, "N": 1, "S": 2}
#: SEED ``label.mat`` values -> classes (``label.mat``: 1 positive, 0 neutral, -1 negative; FIXTURES.md §2.4).
SEED_LABEL_MAT: dict[int, int] = {1: 0, 0: 1, -1: 2}


@dataclass(frozen=True)
class Segment:
    """One annotated interval as written in a file.

    Attributes:
        start_s, stop_s: interval in seconds from the recording start (``stop_s > start_s`` except for
            zero-duration markers, which only the HMC parser returns).
        label: label text as written (``bckg``, ``Sleep stage N2``, ``spsw``).
        channel: channel or montage name the row applies to, ``TERM`` / ``""`` for whole-recording rows.
    """

    start_s: float
    stop_s: float
    label: str
    channel: str = ""

    @property
    def duration_s(self) -> float:
        return self.stop_s - self.start_s


# ------------------------------------------------------------------------------------------------ helpers


def _fail(path: Path | str, reason: str) -> RecordingError:
    """``RecordingError`` whose reason starts with the annotation file's name: ingest's ledger prefixes the
    signal file, so the reason itself must say which partner file is bad."""
    return RecordingError(path, f"{Path(path).name}: {reason}")


def _read_text(path: Path) -> str:
    path = Path(path)
    if not path.is_file():
        raise _fail(path, "annotation file is missing (no partner file next to the signal)")
    try:
        text = path.read_text(encoding="utf-8", errors="strict")
    except UnicodeDecodeError as e:
        raise _fail(path, f"annotation file is not UTF-8 text ({e.reason} at byte {e.start})") from None
    if not text.strip():
        raise _fail(path, "annotation file is empty")
    return text


def _num(path: Path, lineno: int, s: str, what: str) -> float:
    try:
        v = float(s)
    except ValueError:
        raise _fail(path, f"line {lineno}: {what} {s!r} is not a number") from None
    if not np.isfinite(v):
        raise _fail(path, f"line {lineno}: {what} {s!r} is not finite")
    return v


def _check_interval(path: Path, where: str, start: float, stop: float, *, allow_zero: bool = False) -> None:
    if start < -TIME_TOL_S:
        raise _fail(path, f"{where}: negative onset {start:.4f} s")
    if stop < start or (stop == start and not allow_zero):
        raise _fail(path, f"{where}: stop {stop:.4f} s is not after start {start:.4f} s")


def _problem(problems: list[str] | None, err: RecordingError) -> None:
    """Raise ``err`` (strict mode, ``problems`` None) or record its reason as a per-event problem."""
    if problems is None:
        raise err
    problems.append(err.reason)


def _kept(path: Path, segments: Sequence[Segment], problems: list[str] | None) -> None:
    """A lenient parse that kept no event fails the file whole: nothing in it can be trusted."""
    if problems is not None and not segments:
        raise _fail(
            path,
            "no valid event" + (f" ({len(problems)} problem(s), first: {problems[0]})" if problems else ""),
        )


def check_within(
    path: Path, segments: Iterable[Segment], duration_s: float | None, problems: list[str] | None = None
) -> list[Segment]:
    """The segments that end within the signal (``duration_s``, with ``TIME_TOL_S``).

    Args:
        problems: None: raise on the first segment past the end; a list: append one problem per such segment
            (naming it) and leave it out.

    Raises:
        RecordingError: ``event past the end of the signal`` naming the first offending interval (strict).
    """
    segments = list(segments)
    if duration_s is None:
        return segments
    out = []
    for s in segments:
        if s.stop_s > duration_s + TIME_TOL_S:
            _problem(
                problems,
                _fail(
                    path,
                    f"event past the end of the signal: {s.label!r} {s.start_s:.4f}-{s.stop_s:.4f} s"
                    f"{' on ' + s.channel if s.channel and s.channel != 'TERM' else ''}, "
                    f"signal lasts {duration_s:.4f} s (event left out)",
                ),
            )
        else:
            out.append(s)
    return out


def check_no_overlap(
    path: Path, segments: Sequence[Segment], *, per_channel: bool, problems: list[str] | None = None
) -> list[Segment]:
    """The segments that overlap no other by more than ``TIME_TOL_S`` (within one channel if ``per_channel``).

    Args:
        problems: None: raise on the first overlap; a list: append one problem per overlapping pair and leave
            out every segment of such a pair (neither label can be trusted there).

    Raises:
        RecordingError: ``overlapping events`` naming both intervals (strict).
    """
    groups: dict[str, list[Segment]] = {}
    for s in segments:
        groups.setdefault(s.channel if per_channel else "", []).append(s)
    bad: set[int] = set()
    for chan, rows in groups.items():
        rows = sorted(rows, key=lambda s: (s.start_s, s.stop_s))
        for i, a in enumerate(rows):
            for b in rows[i + 1 :]:
                if b.start_s >= a.stop_s - TIME_TOL_S:
                    break
                on = f" on channel {chan}" if chan and chan != "TERM" else ""
                _problem(
                    problems,
                    _fail(
                        path,
                        f"overlapping events{on}: {a.label!r} {a.start_s:.4f}-{a.stop_s:.4f} s and "
                        f"{b.label!r} {b.start_s:.4f}-{b.stop_s:.4f} s (both left out)",
                    ),
                )
                bad |= {id(a), id(b)}
    return [s for s in segments if id(s) not in bad]


def check_labels(
    path: Path, segments: Iterable[Segment], known: Iterable[str], problems: list[str] | None = None
) -> list[Segment]:
    """The segments whose label is in ``known``; an unknown label raises (``problems`` None) or is recorded
    as a problem and its segment left out."""
    known = set(known)
    out = []
    for s in segments:
        if s.label not in known:
            _problem(
                problems,
                _fail(
                    path,
                    f"unknown label {s.label!r} at {s.start_s:.4f} s (known: {', '.join(sorted(known))})"
                    + (" (event left out)" if problems is not None else ""),
                ),
            )
        else:
            out.append(s)
    return out


def segments_to_events(
    path: Path, segments: Iterable[Segment], classes: Mapping[str, int], *, description: str | None = None
) -> list[Event]:
    """Map labelled segments to ``Event``s with the task's integer classes, sorted by onset.

    Args:
        classes: label text -> class index; a label outside it raises ``RecordingError`` (unknown label).
        description: text stored in ``Event.description``; default: the label text and the channel.
    """
    out = []
    for s in segments:
        if s.label not in classes:
            raise _fail(
                path, f"unknown label {s.label!r} at {s.start_s:.4f} s (known: {', '.join(sorted(classes))})"
            )
        desc = (
            description
            if description is not None
            else (s.label if not s.channel or s.channel == "TERM" else f"{s.label}@{s.channel}")
        )
        out.append(Event(float(s.start_s), float(s.duration_s), int(classes[s.label]), desc))
    return sorted(out, key=lambda e: (e.onset_s, e.duration_s, e.label))


# ------------------------------------------------------------------------------------------------ TUEV .rec


@dataclass(frozen=True)
class RecRow:
    """One TUEV ``.rec`` row: ``channel_index,start_s,stop_s,label_id`` (FIXTURES.md §2.1)."""

    channel: int
    start_s: float
    stop_s: float
    label_id: int


def read_tuev_rec(
    path: Path, *, duration_s: float | None = None, problems: list[str] | None = None
) -> list[RecRow]:
    """Parse a TUEV ``.rec`` file: CSV without header, one row per annotated channel per event.

    Args:
        path: the ``.rec`` file.
        duration_s: signal duration; events ending later raise.

        problems: None (strict): any problem below fails the file. A list (what the ``tuev`` source passes):
            a problem of one row (malformed, unknown label, past the end, overlapping another on its channel)
            is appended, naming the row, and the row is left out; the file fails only when no row is valid.

    Returns:
        Rows in file order. Channel indices are 0..21 (``TCP_MONTAGE``); label ids 1..6 (``TUEV_LABELS``).

    Raises:
        RecordingError: missing/empty file, a row without 4 fields, a non-integer channel or label id, a
            channel outside 0..21, an unknown label id, ``stop <= start``, an event past the end of the signal,
            or two events overlapping on the same channel (strict); no valid row (lenient).
    """
    path = Path(path)
    text = _read_text(path)
    rows: list[RecRow] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(_rec_row(path, lineno, line))
        except RecordingError as err:
            _problem(problems, err)
    segs = {
        id(r): Segment(r.start_s, r.stop_s, TUEV_LABELS[r.label_id], TCP_MONTAGE[r.channel]) for r in rows
    }
    keep = check_within(path, list(segs.values()), duration_s, problems)
    keep = check_no_overlap(path, keep, per_channel=True, problems=problems)
    kept = {id(k) for k in keep}  # an event time with a bad row on any channel is left out on every channel
    bad = {(round(r.start_s, 4), round(r.stop_s, 4)) for r in rows if id(segs[id(r)]) not in kept}
    rows = [r for r in rows if (round(r.start_s, 4), round(r.stop_s, 4)) not in bad]
    _kept(path, rows, problems)
    return rows


def _rec_row(path: Path, lineno: int, line: str) -> RecRow:
    """One ``.rec`` row, checked (see ``read_tuev_rec``)."""
    f = [x.strip() for x in line.split(",")]
    if len(f) != 4:
        raise _fail(path, f"line {lineno}: expected 4 comma-separated fields, got {len(f)}: {line!r}")
    ch, start, stop, lab = (
        _num(path, lineno, v, w) for v, w in zip(f, ("channel", "start", "stop", "label"), strict=True)
    )
    if ch != int(ch) or lab != int(lab):
        raise _fail(path, f"line {lineno}: channel and label must be integers: {line!r}")
    if not 0 <= ch < len(TCP_MONTAGE):
        raise _fail(path, f"line {lineno}: channel index {int(ch)} outside 0..{len(TCP_MONTAGE) - 1}")
    if int(lab) not in TUEV_LABELS:
        raise _fail(
            path, f"line {lineno}: unknown label id {int(lab)} (known: 1..6 = spsw gped pled eyem artf bckg)"
        )
    _check_interval(path, f"line {lineno}", start, stop)
    return RecRow(int(ch), start, stop, int(lab))


def tuev_events(path: Path, rows: Sequence[RecRow]) -> list[Event]:
    """Collapse ``.rec`` rows to ONE event per event time (fixes the near-duplicates of reference §2.3 / §9.15).

    The official maker writes one 23-channel sample per ``.rec`` row, i.e. the same window once per annotated
    channel. Here rows with the same ``(start, stop)`` become one event. When channels disagree on the label,
    the lowest label id wins (spsw < gped < pled < eyem < artf < bckg: epileptiform findings before artefacts
    before background); the description records every ``label@channel`` so nothing is lost.

    Returns:
        Events sorted by onset; ``label`` is the class ``id - 1`` (0 spsw ... 5 bckg).
    """
    groups: dict[tuple[float, float], list[RecRow]] = {}
    for r in rows:
        groups.setdefault((round(r.start_s, 4), round(r.stop_s, 4)), []).append(r)
    events = []
    for (start, stop), rs in sorted(groups.items()):
        lab = min(r.label_id for r in rs)
        desc = ",".join(
            f"{TUEV_LABELS[r.label_id]}@{TCP_MONTAGE[r.channel]}" for r in sorted(rs, key=lambda r: r.channel)
        )
        events.append(Event(start, stop - start, lab - 1, desc))
    return events


# ------------------------------------------------------------------------------------------------ TUH .tse


def read_tse(
    path: Path,
    *,
    duration_s: float | None = None,
    labels: Iterable[str] | None = None,
    problems: list[str] | None = None,
) -> list[Segment]:
    """Parse a TUH ``.tse`` / ``.tse_bi`` / ``.tse_agg`` file (``version = tse_v1.0.0``, then
    ``start stop label confidence`` rows; FIXTURES.md §2.1, reference §2.4).

    Rows need not tile the recording: gaps (and a first row after 0 s) stay unlabelled. The official TUSL
    maker only needs each segment to be 10 s long (``prepare_TUSL.py``); FIXTURES.md §2.1 accepts both.

    Args:
        labels: the allowed label texts (e.g. ``TUSL_CLASSES``); None accepts any label.
        duration_s: signal duration; rows ending later are problems.
        problems: None (strict): every problem fails the file. A list (what the sources pass): a problem of
            one row (malformed, unknown label, past the end, overlapping another row) is appended, naming the
            row, and the row (both rows of an overlap) left out; the file fails only when no row is valid.

    Raises:
        RecordingError: missing/empty file, missing version line, or no valid row; in strict mode also a row
            without 4 fields, a non-numeric time, an unknown label, ``stop <= start``, an overlap between rows
            or a row past the end of the signal.
    """
    path = Path(path)
    text = _read_text(path)
    lines = text.splitlines()
    first = next((i for i, ln in enumerate(lines) if ln.strip()), None)
    if first is None or not re.match(r"^\s*version\s*=\s*tse_v", lines[first]):
        raise _fail(path, "not a TSE file: the first line must be 'version = tse_v1.0.0'")
    segs: list[Segment] = []
    for lineno, line in enumerate(lines[first + 1 :], first + 2):
        if not line.strip():
            continue
        try:
            f = line.split()
            if len(f) != 4:
                raise _fail(
                    path, f"line {lineno}: expected 'start stop label confidence', got {line.strip()!r}"
                )
            start, stop = _num(path, lineno, f[0], "start"), _num(path, lineno, f[1], "stop")
            _num(path, lineno, f[3], "confidence")
            _check_interval(path, f"line {lineno}", start, stop)
            segs.append(Segment(start, stop, f[2], "TERM"))
        except RecordingError as err:
            _problem(problems, err)
    if not segs and problems is None:
        raise _fail(path, "no annotation rows after the version line")
    if labels is not None:
        segs = check_labels(path, segs, labels, problems)
    segs = check_within(path, segs, duration_s, problems)
    segs = check_no_overlap(path, segs, per_channel=False, problems=problems)
    _kept(path, segs, problems)
    if not segs:
        raise _fail(path, "no annotation rows after the version line")
    return sorted(segs, key=lambda s: s.start_s)


# ------------------------------------------------------------------------------------------------ TUH v2 .csv


def read_tuh_csv(
    path: Path,
    *,
    duration_s: float | None = None,
    labels: Iterable[str] | None = None,
    problems: list[str] | None = None,
) -> tuple[list[Segment], dict[str, str]]:
    """Parse a TUSZ/TUSL v2 ``.csv`` (one row per TCP channel) or ``.csv_bi`` (``TERM`` rows) file.

    Format (``tuh-nedc/csv_bi/*``): ``# key = value`` header lines (``version``, ``bname``, ``duration =
    1289.0000 secs``, ``montage_file``), then the column line ``channel,start_time,stop_time,label,confidence``
    and data rows. Gaps are allowed (the real ``ref`` files list only the seizures).

    Returns:
        ``(segments, header)``: the rows in file order and the ``# key = value`` pairs.

    Raises:
        RecordingError: missing/empty file, no column line, a row with the wrong field count, a non-numeric
            time, an unknown label, ``stop <= start``, a row past the header's ``duration`` or the signal's
            ``duration_s``, overlapping rows on one channel, or a header duration that disagrees with the signal
            by more than 1 s.
    """
    path = Path(path)
    text = _read_text(path)
    header: dict[str, str] = {}
    body: list[tuple[int, str]] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if not s:
            continue
        if s.startswith("#"):
            m = re.match(r"#\s*([\w ]+?)\s*=\s*(.*)$", s)
            if m:
                header[m.group(1).strip()] = m.group(2).strip()
            continue
        body.append((lineno, s))
    if not body or [c.strip() for c in body[0][1].split(",")][:4] != [
        "channel",
        "start_time",
        "stop_time",
        "label",
    ]:
        raise _fail(path, "no 'channel,start_time,stop_time,label,confidence' column line")
    segs = []
    for lineno, s in body[1:]:
        try:
            f = next(csv.reader([s]))
            if len(f) != 5:
                raise _fail(path, f"line {lineno}: expected 5 fields, got {len(f)}: {s!r}")
            start, stop = _num(path, lineno, f[1], "start_time"), _num(path, lineno, f[2], "stop_time")
            _num(path, lineno, f[4], "confidence")
            _check_interval(path, f"line {lineno}", start, stop)
            segs.append(Segment(start, stop, f[3].strip(), f[0].strip()))
        except RecordingError as err:
            _problem(problems, err)
    if not segs:
        raise _fail(path, "no annotation rows" + (f" ({problems[0]})" if problems else ""))
    if labels is not None:
        segs = check_labels(path, segs, labels, problems)
    file_dur = None
    if "duration" in header:
        m = re.match(r"([0-9.]+)", header["duration"])
        if not m:
            raise _fail(path, f"header duration {header['duration']!r} is not a number")
        file_dur = float(m.group(1))
        if duration_s is not None and abs(file_dur - duration_s) > 1.0:
            raise _fail(
                path, f"header duration {file_dur:.4f} s disagrees with the signal ({duration_s:.4f} s)"
            )
        segs = check_within(path, segs, file_dur, problems)
    segs = check_within(path, segs, duration_s, problems)
    segs = check_no_overlap(path, segs, per_channel=True, problems=problems)
    _kept(path, segs, problems)
    return segs, header


# ------------------------------------------------------------------------------------------------ TUH .lbl

_LBL_MONTAGE = re.compile(r"^montage\s*=\s*(\d+)\s*,\s*([^:]+):")
_LBL_SYMBOLS = re.compile(r"^symbols\[(\d+)\]\s*=\s*\{(.*)\}\s*$")
_LBL_LABEL = re.compile(r"^label\s*=\s*\{(.*)\[(.*)\]\s*\}\s*$")


def read_lbl(
    path: Path,
    *,
    duration_s: float | None = None,
    labels: Iterable[str] | None = None,
    problems: list[str] | None = None,
) -> list[Segment]:
    """Parse a TUH ``.lbl`` file (``version = lbl_v1.0.0``; ``tuh-nedc/test.lbl``).

    The file has a montage block (``montage = 0, FP1-F7: EEG FP1-REF -- EEG F7-REF``), per-level symbol tables
    (``symbols[0] = {0: '(null)', 1: 'spsw', ...}``) and one line per channel interval
    (``label = {level, sublevel, start, stop, channel, [probabilities over the symbols]}``). The label of a
    line is the symbol with the highest probability.

    Returns:
        Segments with ``channel`` = the montage name (``FP1-F7``), in file order. Identical lines (the real
        ``test.lbl`` repeats some) are kept once.

    Raises:
        RecordingError: missing/empty file, no version line, a label line that does not parse, an unknown level
            or channel index, a probability vector whose length differs from the symbol table, an all-zero
            vector, an unknown label, ``stop <= start``, a label past the end of the signal, or overlapping
            intervals on one channel.
    """
    path = Path(path)
    text = _read_text(path)
    if not re.search(r"^\s*version\s*=\s*lbl_v", text, re.M):
        raise _fail(path, "not a LBL file: no 'version = lbl_v1.0.0' line")
    montage: dict[int, str] = {}
    symbols: dict[int, dict[int, str]] = {}
    segs: list[Segment] = []
    seen: set[Segment] = set()
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if m := _LBL_MONTAGE.match(line):
            montage[int(m.group(1))] = m.group(2).strip()
        elif m := _LBL_SYMBOLS.match(line):
            table = {}
            for k, v in re.findall(r"(\d+)\s*:\s*'([^']*)'", m.group(2)):
                table[int(k)] = v
            symbols[int(m.group(1))] = table
        elif line.startswith("label"):
            m = _LBL_LABEL.match(line)
            if not m:
                raise _fail(path, f"line {lineno}: label line does not parse: {line[:80]!r}")
            head = [x.strip() for x in m.group(1).split(",") if x.strip()]
            if len(head) != 5:
                raise _fail(path, f"line {lineno}: expected level, sublevel, start, stop, channel")
            level = int(_num(path, lineno, head[0], "level"))
            start, stop = _num(path, lineno, head[2], "start"), _num(path, lineno, head[3], "stop")
            chan = int(_num(path, lineno, head[4], "channel"))
            probs = [_num(path, lineno, p, "probability") for p in m.group(2).split(",") if p.strip()]
            if level not in symbols:
                raise _fail(path, f"line {lineno}: level {level} has no symbols[{level}] table")
            if chan not in montage:
                raise _fail(path, f"line {lineno}: channel index {chan} is not in the montage block")
            if len(probs) != len(symbols[level]):
                raise _fail(
                    path, f"line {lineno}: {len(probs)} probabilities for {len(symbols[level])} symbols"
                )
            if max(probs) <= 0:
                raise _fail(path, f"line {lineno}: all-zero probability vector")
            _check_interval(path, f"line {lineno}", start, stop)
            seg = Segment(start, stop, symbols[level][int(np.argmax(probs))], montage[chan])
            if seg not in seen:
                seen.add(seg)
                segs.append(seg)
    if not segs:
        raise _fail(path, "no label lines")
    if labels is not None:
        segs = check_labels(path, segs, labels, problems)
    segs = check_within(path, segs, duration_s, problems)
    segs = check_no_overlap(path, segs, per_channel=True, problems=problems)
    _kept(path, segs, problems)
    return segs


def term_segments(segments: Sequence[Segment], priority: Sequence[str]) -> list[Segment]:
    """Aggregate channel-based rows (``.csv``, ``.lbl``) into term-based segments for the whole recording.

    The time axis is cut at every row boundary; each elementary interval takes the label that comes first in
    ``priority`` among the rows covering it on any channel (e.g. ``("seiz", "slow", "bckg")``: a seizure on one
    channel makes the interval a seizure). Adjacent intervals with the same label are merged. Intervals covered
    by no row stay unlabelled. ``TERM`` rows, when present, are used as they are.

    Raises:
        ValueError: a label missing from ``priority`` (callers check labels first).
    """
    term = [s for s in segments if s.channel == "TERM"]
    if term:
        return sorted(term, key=lambda s: s.start_s)
    rank = {lab: i for i, lab in enumerate(priority)}
    bounds = sorted({round(s.start_s, 4) for s in segments} | {round(s.stop_s, 4) for s in segments})
    out: list[Segment] = []
    for a, b in pairwise(bounds):
        mid = (a + b) / 2
        cover = [s.label for s in segments if s.start_s <= mid < s.stop_s]
        if not cover:
            continue
        lab = min(cover, key=lambda x: rank[x])
        if out and out[-1].label == lab and abs(out[-1].stop_s - a) <= TIME_TOL_S:
            out[-1] = Segment(out[-1].start_s, b, lab, "TERM")
        else:
            out.append(Segment(a, b, lab, "TERM"))
    return out


# ------------------------------------------------------------------------------------------------ HMC scoring


def read_hmc_scoring_edf(path: Path) -> list[Segment]:
    """Read an HMC ``SNxxx_sleepscoring.edf`` (EDF+C, annotations only) with MNE.

    Returns:
        One segment per annotation in file order; channel = the text after ``@@`` (``Lights off@@EEG F4-A1``).

    Raises:
        RecordingError: the file is missing or MNE cannot read its annotations, or it holds none.
    """
    import mne

    path = Path(path)
    if not path.is_file():
        raise _fail(path, "scoring file is missing (no partner file next to the PSG)")
    try:
        ann = mne.read_annotations(str(path))
    except Exception as e:  # noqa: BLE001 - any reader failure is a bad file; the message says which
        raise _fail(path, f"cannot read EDF+ annotations: {type(e).__name__}: {e}") from None
    if len(ann) == 0:
        raise _fail(path, "scoring file holds no annotations")
    out = []
    for o, d, t in zip(ann.onset, ann.duration, ann.description, strict=True):
        label, _, chan = str(t).partition("@@")
        out.append(Segment(float(o), float(o) + float(d), label.strip(), chan.strip()))
    return out


def read_hmc_scoring_txt(path: Path) -> list[Segment]:
    """Read an HMC ``SNxxx_sleepscoring.txt``: CSV with the header
    ``Date, Time, Recording onset, Duration, Annotation, Linked channel`` (FIXTURES.md §2.2).

    Raises:
        RecordingError: missing/empty file, a missing column, a non-numeric onset or duration.
    """
    path = Path(path)
    text = _read_text(path)
    rows = list(csv.reader(text.splitlines(), skipinitialspace=True))
    rows = [r for r in rows if any(c.strip() for c in r)]
    head = [c.strip() for c in rows[0]]
    need = ["Recording onset", "Duration", "Annotation"]
    missing = [c for c in need if c not in head]
    if missing:
        raise _fail(path, f"header lacks column(s) {missing}; got {head}")
    io, idur, ilab = (head.index(c) for c in need)
    ich = head.index("Linked channel") if "Linked channel" in head else None
    out = []
    for k, r in enumerate(rows[1:], 2):
        if len(r) <= max(io, idur, ilab):
            raise _fail(path, f"row {k}: {len(r)} fields, expected {len(head)}")
        o = _num(path, k, r[io].strip(), "Recording onset")
        d = _num(path, k, r[idur].strip(), "Duration")
        chan = r[ich].strip() if ich is not None and ich < len(r) else ""
        out.append(Segment(o, o + d, r[ilab].strip(), chan))
    if not out:
        raise _fail(path, "scoring file holds no rows")
    return out


def hmc_epochs(
    path: Path,
    segments: Sequence[Segment],
    *,
    duration_s: float | None = None,
    problems: list[str] | None = None,
) -> list[Event]:
    """Turn HMC scoring rows into 30-s stage events (classes ``HMC_STAGES``), fixing the reference §2.5 bug.

    Only real stage rows become events: the array is never pre-allocated, so there are no zero-filled
    "Wake" samples (reference §9.16). ``Lights off/on`` markers are skipped.

    Args:
        problems: None (strict): every problem fails the file. A list (what the ``hmc`` source passes): a
            problem of one row (unknown annotation, not 30 s, overlapping another epoch, past the end of the
            signal) is appended, naming the epoch, and the epoch left out; the file fails only when no epoch
            is valid.

    Raises:
        RecordingError: no stage rows at all or (lenient) no valid epoch; in strict mode also an unknown
            annotation, a stage row whose duration is not 30 s, overlapping epochs or an epoch past the end.
    """
    stages = []
    for s in segments:
        if s.label in HMC_MARKERS:
            continue
        try:
            if s.label not in HMC_STAGES:
                raise _fail(
                    path,
                    f"unknown label {s.label!r} at {s.start_s:.4f} s (known: {', '.join(HMC_STAGES)}, "
                    f"{', '.join(sorted(HMC_MARKERS))})",
                )
            _check_interval(path, f"epoch at {s.start_s:.4f} s", s.start_s, s.stop_s)
            if abs(s.duration_s - SLEEP_EPOCH_S) > TIME_TOL_S:
                raise _fail(
                    path,
                    f"{s.label!r} at {s.start_s:.4f} s lasts {s.duration_s:.4f} s, expected "
                    f"{SLEEP_EPOCH_S:.0f} s",
                )
            stages.append(s)
        except RecordingError as err:
            _problem(problems, err)
    if not stages and not problems:
        raise _fail(path, "no sleep-stage rows")
    stages = check_within(path, stages, duration_s, problems)
    stages = check_no_overlap(path, stages, per_channel=False, problems=problems)
    _kept(path, stages, problems)
    return segments_to_events(path, stages, HMC_STAGES)


# ------------------------------------------------------------------------------------------------ Sleep-EDF


def read_sleep_edf_hypnogram(path: Path, *, duration_s: float | None = None) -> list[Event]:
    """Read a Sleep-EDF ``*-Hypnogram.edf`` (EDF+C, R&K labels with durations) into 30-s AASM epochs.

    Each scored interval is cut into 30-s epochs (its onset and duration are multiples of 30 s in Sleep-EDF).
    The hypnogram covers the whole day, past the end of the PSG (``SC4001EC`` runs to 86,400 s while the PSG
    lasts 300 s here; FIXTURES.md §1), so epochs not fully inside ``duration_s`` are clipped off, as the
    Sleep-EDF documentation intends. ``?`` and ``Movement time`` are skipped.

    Returns:
        Events with classes ``SLEEP_EDF_STAGES`` (W 0, N1 1, N2 2, N3 3 (R&K 3+4), R 4).

    Raises:
        RecordingError: missing/unreadable file, an unknown label, an interval not on the 30-s grid, or
            overlapping intervals.
    """
    import mne

    path = Path(path)
    if not path.is_file():
        raise _fail(path, "hypnogram file is missing (no partner file next to the PSG)")
    try:
        ann = mne.read_annotations(str(path))
    except Exception as e:  # noqa: BLE001
        raise _fail(path, f"cannot read EDF+ annotations: {type(e).__name__}: {e}") from None
    segs = [
        Segment(float(o), float(o) + float(d), str(t))
        for o, d, t in zip(ann.onset, ann.duration, ann.description, strict=True)
    ]
    if not segs:
        raise _fail(path, "hypnogram holds no annotations")
    check_labels(path, segs, set(SLEEP_EDF_STAGES) | SLEEP_EDF_UNSCORED)
    check_no_overlap(path, segs, per_channel=False)
    events = []
    for s in segs:
        if s.label in SLEEP_EDF_UNSCORED:
            continue
        n = s.duration_s / SLEEP_EPOCH_S
        if abs(n - round(n)) > 1e-3 or round(n) < 1:
            raise _fail(
                path, f"{s.label!r} at {s.start_s:.1f} s lasts {s.duration_s} s, not a multiple of 30 s"
            )
        for k in range(round(n)):
            on = s.start_s + k * SLEEP_EPOCH_S
            if duration_s is not None and on + SLEEP_EPOCH_S > duration_s + TIME_TOL_S:
                break
            events.append(Event(on, SLEEP_EPOCH_S, SLEEP_EDF_STAGES[s.label], s.label))
    return events


# ------------------------------------------------------------------------------------------------ SEED trials


@dataclass(frozen=True)
class Trial:
    """One SEED film clip: ``[start_s, end_s)`` seconds from the session start, emotion ``H``/``N``/``S``."""

    index: int
    start_s: float
    end_s: float
    emotion: str

    @property
    def label(self) -> int:
        return SEED_CLASSES[self.emotion]


def seed_trials() -> list[Trial]:
    """The 15 SEED trials of reference §2.7 (same boundaries and labels for every session), ``end_s`` exclusive
    (the table's inclusive end second + 1, see ``SEED_TRIAL_END_S``)."""
    return [
        Trial(k, float(a), float(b) + 1.0, e)
        for k, (a, b, e) in enumerate(
            zip(SEED_TRIAL_START_S, SEED_TRIAL_END_S, SEED_TRIAL_EMOTIONS, strict=True)
        )
    ]


def read_trial_table(path: Path) -> list[Trial]:
    """Read a trial table: CSV with header ``start_s,end_s,emotion`` (``end_s`` exclusive; emotion ``H``/``N``/
    ``S`` or the ``label.mat`` values ``1``/``0``/``-1``), one row per trial in presentation order.

    Used for SEED-family sessions whose clip timing differs from reference §2.7 (and for short test sessions).

    Raises:
        RecordingError: missing/empty file, wrong header, a non-numeric time, an unknown emotion,
            ``end <= start``, or overlapping trials.
    """
    path = Path(path)
    text = _read_text(path)
    rows = [
        r for r in csv.reader(text.splitlines(), skipinitialspace=True) if r and any(c.strip() for c in r)
    ]
    if [c.strip() for c in rows[0]] != ["start_s", "end_s", "emotion"]:
        raise _fail(path, f"header must be 'start_s,end_s,emotion', got {','.join(rows[0])!r}")
    inv = {str(k): e for e, k in (("H", 1), ("N", 0), ("S", -1))}
    trials = []
    for k, r in enumerate(rows[1:]):
        if len(r) != 3:
            raise _fail(path, f"row {k + 2}: expected 3 fields, got {len(r)}")
        a, b = _num(path, k + 2, r[0], "start_s"), _num(path, k + 2, r[1], "end_s")
        e = r[2].strip()
        e = inv.get(e, e)
        if e not in SEED_CLASSES:
            raise _fail(path, f"row {k + 2}: unknown emotion {r[2].strip()!r} (known: H N S, 1 0 -1)")
        _check_interval(path, f"row {k + 2}", a, b)
        trials.append(Trial(k, a, b, e))
    if not trials:
        raise _fail(path, "trial table has no rows")
    check_no_overlap(path, [Segment(t.start_s, t.end_s, t.emotion) for t in trials], per_channel=False)
    return trials


def seed_trial_events(path: Path, trials: Sequence[Trial], *, duration_s: float | None = None) -> list[Event]:
    """SEED trials as events (class H 0 / N 1 / S 2, description ``trial<k>``).

    Raises:
        RecordingError: a trial past the end of the signal (the session is shorter than the trial table).
    """
    segs = [Segment(t.start_s, t.end_s, t.emotion, f"trial{t.index}") for t in trials]
    check_within(path, segs, duration_s)
    return [Event(t.start_s, t.end_s - t.start_s, t.label, f"trial{t.index}") for t in trials]


# Imported last on purpose: ``neurolm_data.sources`` imports every source module, and the corpus sources import
# this module; importing ``sources.base`` only after every name above is defined lets either side be imported
# first without a circular-import failure. ``Event``/``RecordingError`` are only used inside functions.
from neurolm_data.sources.base import Event, RecordingError  # noqa: E402
