"""Corpus sources. Importing this package registers every source module listed below.

To add a corpus: write ``neurolm_data/sources/<name>.py`` with a ``@register_source`` class and add its
module name to ``_MODULES``.
"""

from importlib import import_module

from neurolm_data.sources.base import (
    DigitalSamples,
    Event,
    RawSignal,
    RecordingError,
    RecordingRef,
    Source,
    available_sources,
    get_source,
    register_source,
    safe_key,
)

_MODULES: tuple[str, ...] = (
    "workload",
    "edf",
    "tueg",
    "tuab",
    "tuev",
    "tusl",
    "seed",
    "hmc",
    "sleep_edf",
    "eegmmidb",
    "tusz",
    "seed_family",
    "siena",
    "adhd",
    "mne_folder",
    "bids",
)

for _m in _MODULES:
    try:
        import_module(f"neurolm_data.sources.{_m}")
    except ModuleNotFoundError as e:  # a source module still being written must not break the others
        if e.name != f"neurolm_data.sources.{_m}":
            raise

__all__ = [
    "DigitalSamples",
    "Event",
    "RawSignal",
    "RecordingError",
    "RecordingRef",
    "Source",
    "available_sources",
    "get_source",
    "register_source",
    "safe_key",
]
