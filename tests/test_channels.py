"""Channel vocabulary and name normalizer (neurolm_data/channels.py) against the names real files carry."""

from __future__ import annotations

import pyedflib
import pytest

from neurolm_data.channels import (
    PAD_INDEX,
    STANDARD_1020,
    channel_index,
    map_channels,
    normalize_channel,
)


def test_vocabulary_indices_match_the_spec():
    # neurolm-spec.md §1.3: 0:FP1, 19:FZ, 88:T3, 120:FP1-F7, 135:P4-O2, 136:pad, 138:I2
    assert len(STANDARD_1020) == 139
    assert (STANDARD_1020[0], STANDARD_1020[19], STANDARD_1020[88]) == ("FP1", "FZ", "T3")
    assert (STANDARD_1020[120], STANDARD_1020[135], STANDARD_1020[138]) == ("FP1-F7", "P4-O2", "I2")
    assert PAD_INDEX == 136


@pytest.mark.parametrize(
    ("raw", "name", "reference"),
    [
        ("EEG FP1-REF", "FP1", "REF"),  # TUH 01_tcp_ar
        ("EEG Fp1-Ref", "FP1", "REF"),  # Nihon Kohden
        ("EEG Fp1", "FP1", "unspecified"),  # EEGMAT
        ("Fp1.", "FP1", "unspecified"),  # EEGMMIDB pads with dots
        ("EEG FP1-LE", "FP1", "LE"),  # TUH 02_tcp_le
        ("FP1-F7", "FP1-F7", "bipolar"),  # CHB-MIT bipolar pair in the vocabulary
        ("EEG F4-M1", "F4", "mastoid"),  # HMC
        ("EEG T3-LE", "T3", "LE"),  # old 10-20 name kept apart from T7 (spec §9.25)
    ],
)
def test_normalize_real_world_names(raw, name, reference):
    ch = normalize_channel(raw)
    assert (ch.name, ch.reference, ch.index) == (name, reference, STANDARD_1020.index(name))


@pytest.mark.parametrize(
    "raw",
    [
        "ECG ECG",
        "EEG EKG1-REF",
        "PHOTIC-REF",
        "IBI",
        "BURSTS",
        "SUPPR",
        "EEG ROC-REF",
        "SaO2 X9",
        "POL DC01",
        "EEG 26-REF",
        "POL $A1",
        "FP1-C4",
    ],
)
def test_non_eeg_or_unknown_names_are_dropped_with_a_reason(raw):
    ch = normalize_channel(raw)
    assert ch.name is None and ch.index is None and ch.reason


def test_merge_synonyms_maps_old_names():
    assert normalize_channel("EEG T3-REF", merge_synonyms=True).name == "T7"
    assert normalize_channel("EEG T3-REF").name == "T3"


def test_channel_index_raises_for_unknown():
    assert channel_index("EEG CZ-REF") == STANDARD_1020.index("CZ")
    with pytest.raises(KeyError, match="ECG"):
        channel_index("ECG ECG")


def test_map_channels_on_real_headers(samples_dir):
    labels = pyedflib.EdfReader(str(samples_dir / "tuh-nedc" / "example.edf")).getSignalLabels()
    cm = map_channels(labels)
    assert cm.montage == "REF"
    assert cm.names[:3] == ["FP1", "FP2", "F3"] and len(cm.names) == 23  # 21 10-20 + T1/T2 (+A1/A2)
    assert cm.indices == [STANDARD_1020.index(n) for n in cm.names]
    dropped = dict(cm.dropped)
    assert set(dropped) == {
        "EEG ROC-REF",
        "EEG LOC-REF",
        "EEG EKG1-REF",
        "PHOTIC-REF",
        "IBI",
        "BURSTS",
        "SUPPR",
    }


def test_map_channels_keep_orders_and_lists_the_rest(eegmat_dir):
    labels = pyedflib.EdfReader(str(eegmat_dir / "Subject00_1.edf")).getSignalLabels()
    keep = ["FZ", "CZ", "PZ", "FP1"]
    cm = map_channels(labels, keep=keep)
    assert cm.names == keep and cm.montage == "unspecified"
    assert [labels[p] for p in cm.picks] == ["EEG Fz", "EEG Cz", "EEG Pz", "EEG Fp1"]
    reasons = dict(cm.dropped)
    assert reasons["ECG ECG"] == "non-EEG channel type"
    assert reasons["EEG F3"] == "not in the source's channel list"


def test_mixed_references_give_a_mixed_montage_and_duplicates_are_dropped():
    cm = map_channels(["EEG FP1-REF", "EEG FP2-LE", "EEG Fp1"])
    assert cm.montage == "mixed:LE+REF"
    assert cm.names == ["FP1", "FP2"]
    assert cm.dropped == [("EEG Fp1", "duplicate of 'EEG FP1-REF'")]


def test_reference_electrode_pair_is_not_a_scalp_channel():
    """EEGMAT's ``EEG A2-A1`` is a reference check: dropped, not mapped to A2."""
    from neurolm_data.channels import map_channels, normalize_channel

    ch = normalize_channel("EEG A2-A1")
    assert ch.name is None and "reference-electrode pair" in ch.reason
    cm = map_channels(["EEG Fp1", "EEG A2-A1", "EEG F4-M1"])
    assert cm.names == ["FP1", "F4"] and cm.dropped[0][0] == "EEG A2-A1"
