"""Channel standardization: one vocabulary, a normalizer for real-world channel names, montage detection.

The vocabulary is NeuroLM's ``standard_1020`` list (139 entries, index -> name), reproduced from the
project reference (``docs/neurolm-reference.md`` §1.3, taken from the official ``dataset.py``). Its indices are what
the models embed (``pos_embed = nn.Embedding(256, d)``), so the order here is load-bearing: never reorder,
only append.

The normalizer turns names as they appear in EDF headers (``EEG FP1-REF``, ``EEG Fp1-Ref``, ``EEG Fp1``,
``Fp1.``, ``EEG FP1-LE``, ``FP1-F7``, ``EEG F4-M1``) into a canonical vocabulary name, a vocabulary index
and a reference label. Channels that are not EEG, or not in the vocabulary, are dropped and listed with a
reason, never silently.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache

#: NeuroLM ``standard_1020`` (docs/neurolm-reference.md §1.3). Index = position. 136 is the padding slot.
STANDARD_1020: tuple[str, ...] = (
    "FP1",
    "FPZ",
    "FP2",
    "AF9",
    "AF7",
    "AF5",
    "AF3",
    "AF1",
    "AFZ",
    "AF2",
    "AF4",
    "AF6",
    "AF8",
    "AF10",
    "F9",
    "F7",
    "F5",
    "F3",
    "F1",
    "FZ",
    "F2",
    "F4",
    "F6",
    "F8",
    "F10",
    "FT9",
    "FT7",
    "FC5",
    "FC3",
    "FC1",
    "FCZ",
    "FC2",
    "FC4",
    "FC6",
    "FT8",
    "FT10",
    "T9",
    "T7",
    "C5",
    "C3",
    "C1",
    "CZ",
    "C2",
    "C4",
    "C6",
    "T8",
    "T10",
    "TP9",
    "TP7",
    "CP5",
    "CP3",
    "CP1",
    "CPZ",
    "CP2",
    "CP4",
    "CP6",
    "TP8",
    "TP10",
    "P9",
    "P7",
    "P5",
    "P3",
    "P1",
    "PZ",
    "P2",
    "P4",
    "P6",
    "P8",
    "P10",
    "PO9",
    "PO7",
    "PO5",
    "PO3",
    "PO1",
    "POZ",
    "PO2",
    "PO4",
    "PO6",
    "PO8",
    "PO10",
    "O1",
    "OZ",
    "O2",
    "O9",
    "CB1",
    "CB2",
    "IZ",
    "O10",
    "T3",
    "T5",
    "T4",
    "T6",
    "M1",
    "M2",
    "A1",
    "A2",
    "CFC1",
    "CFC2",
    "CFC3",
    "CFC4",
    "CFC5",
    "CFC6",
    "CFC7",
    "CFC8",
    "CCP1",
    "CCP2",
    "CCP3",
    "CCP4",
    "CCP5",
    "CCP6",
    "CCP7",
    "CCP8",
    "T1",
    "T2",
    "FTT9h",
    "TTP7h",
    "TPP9h",
    "FTT10h",
    "TPP8h",
    "TPP10h",
    "FP1-F7",
    "F7-T7",
    "T7-P7",
    "P7-O1",
    "FP2-F8",
    "F8-T8",
    "T8-P8",
    "P8-O2",
    "FP1-F3",
    "F3-C3",
    "C3-P3",
    "P3-O1",
    "FP2-F4",
    "F4-C4",
    "C4-P4",
    "P4-O2",
    "pad",
    "I1",
    "I2",
)
assert len(STANDARD_1020) == 139

#: Vocabulary index of the padding token (docs/neurolm-reference.md §1.2).
PAD_INDEX: int = STANDARD_1020.index("pad")  # 136
#: Size of the channel embedding tables in NeuroLM (``nn.Embedding(256, d)``, docs/neurolm-reference.md §1.2).
N_CHANNEL_EMBEDDINGS: int = 256

_INDEX_BY_UPPER: dict[str, int] = {name.upper(): i for i, name in enumerate(STANDARD_1020) if name != "pad"}

#: Old 10-20 names and their 10-10 equivalents. The official code embeds them separately
#: (docs/neurolm-reference.md §1.3 and §9.25); ``map_channels(..., merge_synonyms=True)`` maps old to new.
SYNONYMS: dict[str, str] = {"T3": "T7", "T4": "T8", "T5": "P7", "T6": "P8"}

#: Reference suffixes (the part after the last ``-``) and the montage label they imply. TUH writes
#: ``-REF`` (common reference, the ``01_tcp_ar`` folders) and ``-LE`` (linked ears, ``02_tcp_le``);
#: PSG data such as HMC writes mastoid references (``F4-M1``), as the official HMC maker assumes.
REFERENCE_SUFFIXES: dict[str, str] = {
    "REF": "REF",
    "LE": "LE",
    "AR": "AR",
    "AVG": "AR",
    "AV": "AR",
    "CAR": "AR",
    "M1": "mastoid",
    "M2": "mastoid",
    "A1": "ear",
    "A2": "ear",
}

#: Reference electrodes: a derivation between two of them (EEGMAT's ``EEG A2-A1``) is a reference check,
#: not a scalp channel, and is dropped.
_REFERENCE_ELECTRODES = frozenset({"A1", "A2", "M1", "M2"})

#: Channel-type prefixes that mark a channel as EEG (stripped before lookup).
_EEG_PREFIXES = ("EEG ", "EEG-", "EEG_", "POL ")
#: Name fragments of channels that are never EEG (TUH, PSG and BCI conventions).
_NON_EEG = re.compile(
    r"^(ECG|EKG|EMG|EOG|RESP|PHOTIC|IBI|BURSTS|SUPPR|SPO2|SAO2|PULSE|PLETH|EVENT|STI|STATUS|TRIGGER|MARK|"
    r"EDFANNOTATIONS|BDFANNOTATIONS|ROC|LOC|LUC|RLC|DC\d|X\d|SP\d|RESP|THOR|ABDO|POSITION|LIGHT|TEMP|HR)",
)


@dataclass(frozen=True)
class ChannelName:
    """One normalized channel name.

    Attributes:
        raw: the name as read from the file.
        name: canonical vocabulary name (``FP1``, ``FP1-F7``), or None if unmapped.
        index: index into ``STANDARD_1020``, or None if unmapped.
        reference: montage label implied by the name: ``REF``, ``LE``, ``AR``, ``mastoid``, ``ear``,
            ``bipolar`` or ``unspecified`` (no reference in the name, e.g. ``EEG Fp1``).
        reason: why the channel is unmapped (None when mapped).
    """

    raw: str
    name: str | None
    index: int | None
    reference: str
    reason: str | None = None


@lru_cache(maxsize=4096)
def normalize_channel(raw: str, *, merge_synonyms: bool = False) -> ChannelName:
    """Normalize one channel name to the NeuroLM vocabulary.

    Handles ``EEG FP1-REF``, ``EEG Fp1-Ref``, ``EEG Fp1``, ``Fp1.`` (EEGMMIDB pads names with dots),
    ``EEG FP1-LE``, ``FP1-F7`` (bipolar, kept only if the pair is in the vocabulary) and ``EEG F4-M1``.
    Matching is case-insensitive. Never raises: an unmapped channel comes back with ``name=None`` and
    a ``reason``. Results are cached (the result is immutable; every recording of a corpus repeats the same
    few labels).
    """
    s = raw.strip()
    upper = s.upper()
    typed_eeg = False
    for p in _EEG_PREFIXES:
        if upper.startswith(p):
            s, typed_eeg = s[len(p) :].strip(), True
            break
    s = s.rstrip(".").strip()
    u = s.upper().replace(" ", "")
    if not typed_eeg and _NON_EEG.match(u):
        return ChannelName(raw, None, None, "unspecified", "non-EEG channel type")
    reference = "unspecified"
    if "-" in u:
        head, tail = u.rsplit("-", 1)
        if head in _REFERENCE_ELECTRODES and tail in _REFERENCE_ELECTRODES:
            return ChannelName(
                raw, None, None, "bipolar", f"reference-electrode pair {u!r} (not a scalp channel)"
            )
        if tail in REFERENCE_SUFFIXES:
            reference, u = REFERENCE_SUFFIXES[tail], head
        else:
            reference = "bipolar"
    if merge_synonyms and u in SYNONYMS:
        u = SYNONYMS[u]
    idx = _INDEX_BY_UPPER.get(u)
    if idx is None:
        if _NON_EEG.match(u):
            return ChannelName(raw, None, None, reference, "non-EEG channel type")
        what = "bipolar pair" if reference == "bipolar" else "electrode"
        return ChannelName(raw, None, None, reference, f"{what} {u!r} not in the standard_1020 vocabulary")
    return ChannelName(raw, STANDARD_1020[idx], idx, reference)


@dataclass(frozen=True)
class ChannelMap:
    """The result of mapping a recording's channels to the vocabulary.

    Attributes:
        picks: positions in the input channel list that are kept, in input order.
        names: canonical names of the kept channels (``len == len(picks)``).
        indices: ``STANDARD_1020`` indices of the kept channels.
        montage: the recording's montage: the most common reference label among kept channels
            (``REF``, ``LE``, ``AR``, ``bipolar``, ``mastoid``, ``ear``, ``unspecified``), or ``mixed:A+B``.
        dropped: ``(raw name, reason)`` for every input channel that is not kept.
    """

    picks: list[int]
    names: list[str]
    indices: list[int]
    montage: str
    dropped: list[tuple[str, str]] = field(default_factory=list)


def map_channels(
    raw_names: list[str],
    *,
    merge_synonyms: bool = False,
    keep: list[str] | None = None,
) -> ChannelMap:
    """Map a recording's channel names to the vocabulary; drop and list the rest.

    Args:
        raw_names: channel names as read from the file.
        merge_synonyms: map old 10-20 names to 10-10 (T3->T7 ...). Off by default to stay faithful to
            the official code, which embeds them separately (docs/neurolm-reference.md §9.25).
        keep: optional canonical names to keep, in this order (e.g. a protocol's 19 channels); other
            mapped channels are dropped with reason ``not in the source's channel list``. Names in
            ``keep`` that are absent are simply missing from the result (the caller decides whether
            that is an error).

    Returns:
        A ``ChannelMap``. The first occurrence wins when two inputs map to the same name.
    """
    seen: dict[str, int] = {}
    mapped: list[tuple[int, ChannelName]] = []
    dropped: list[tuple[str, str]] = []
    for pos, raw in enumerate(raw_names):
        ch = normalize_channel(raw, merge_synonyms=merge_synonyms)
        if ch.name is None:
            dropped.append((raw, ch.reason or "unmapped"))
        elif ch.name in seen:
            dropped.append((raw, f"duplicate of {raw_names[seen[ch.name]]!r}"))
        else:
            seen[ch.name] = pos
            mapped.append((pos, ch))
    if keep is not None:
        wanted = {n.upper(): k for k, n in enumerate(keep)}
        kept = [(p, c) for p, c in mapped if c.name.upper() in wanted]
        dropped += [
            (c.raw, "not in the source's channel list") for p, c in mapped if c.name.upper() not in wanted
        ]
        mapped = sorted(kept, key=lambda pc: wanted[pc[1].name.upper()])
    refs = Counter(c.reference for _, c in mapped)
    if not refs:
        montage = "none"
    elif len(refs) == 1:
        montage = next(iter(refs))
    else:
        montage = "mixed:" + "+".join(sorted(refs))
    return ChannelMap(
        picks=[p for p, _ in mapped],
        names=[c.name for _, c in mapped],
        indices=[c.index for _, c in mapped],
        montage=montage,
        dropped=dropped,
    )


def channel_index(name: str) -> int:
    """Vocabulary index of a canonical or raw channel name. Raises KeyError naming the channel if unmapped."""
    ch = normalize_channel(name)
    if ch.index is None:
        raise KeyError(f"channel {name!r}: {ch.reason}")
    return ch.index
