"""Fetch the default dataset, PhysioNet EEGMAT 1.0.0, once, verified against its published SHA-256 sums.

PhysioNet publishes ``SHA256SUMS.txt`` beside the files (https://physionet.org/files/eegmat/1.0.0/). That
file is pinned here by its own sha256 (taken from the byte-identical copy in ``eeg-samples/eegmat``), and
every other file is then fetched with pooch against the sum listed in it; pooch keeps the files and
re-verifies, not re-downloads, on later calls.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

#: PhysioNet EEGMAT 1.0.0 file server (DOI 10.13026/C2JQ1P).
EEGMAT_URL = "https://physionet.org/files/eegmat/1.0.0/"
#: sha256 of EEGMAT 1.0.0's ``SHA256SUMS.txt`` (75 lines: 72 EDF, RECORDS, subject-info.csv, README.txt).
EEGMAT_SUMS_SHA256 = "85c71151495c8543e80fd48559cb62eca7b6c407ed5e96c8e490db7ecabf1fa0"
#: Environment variable naming a local EEGMAT folder (the default ``ROOT`` of ``neurolm-data ingest workload``).
EEGMAT_ENV = "NEUROLM_EEGMAT"


def parse_sha256sums(text: str) -> dict[str, str]:
    """``{file name: hex sha256}`` from ``sha256sum``-style lines (``<hex> <name>``, ``*`` binary marks allowed).

    Raises:
        ValueError: a non-empty line that is not ``<64 hex digits> <name>``.
    """
    out: dict[str, str] = {}
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split(maxsplit=1)
        digest = parts[0].lower()
        if len(parts) != 2 or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise ValueError(f"SHA256SUMS line {i} is not '<sha256> <name>': {line!r}")
        out[parts[1].strip().lstrip("*")] = digest
    return out


def eegmat_data_files(sums: dict[str, str]) -> list[str]:
    """The files ingest needs: the 72 ``SubjectNN_{1,2}.edf``, ``RECORDS`` and ``subject-info.csv`` (sorted).
    PhysioNet's ``README.txt`` is documentation and is not fetched."""
    return sorted(n for n in sums if n.lower().endswith(".edf") or n in ("RECORDS", "subject-info.csv"))


def verify_folder(folder: str | Path, sums: dict[str, str]) -> list[str]:
    """Names in ``sums`` whose file in ``folder`` is missing or has another sha256 (empty list: all good)."""
    bad = []
    for name, digest in sorted(sums.items()):
        p = Path(folder) / name
        if not p.is_file():
            bad.append(name)
            continue
        h = hashlib.sha256()
        with open(p, "rb") as f:
            while block := f.read(1 << 20):
                h.update(block)
        if h.hexdigest() != digest:
            bad.append(name)
    return bad


def default_eegmat_dir() -> Path:
    """``$NEUROLM_EEGMAT`` if set, else pooch's per-user cache folder ``.../neurolm/eegmat-1.0.0``."""
    env = os.environ.get(EEGMAT_ENV)
    if env:
        return Path(env)
    import pooch

    return Path(pooch.os_cache("neurolm")) / "eegmat-1.0.0"


def fetch_eegmat(dest: str | Path | None = None, *, progress: bool = False) -> Path:
    """Download EEGMAT 1.0.0 (``eegmat_data_files``) into ``dest`` (default ``default_eegmat_dir()``) unless
    already there with the published sha256; verify every file.

    Returns:
        The folder holding ``SubjectNN_{1,2}.edf``.

    Raises:
        ValueError: a downloaded file does not match its published sha256 (pooch raises it).
        requests/HTTP errors: no connection to physionet.org.
    """
    import pooch

    dest = Path(dest) if dest is not None else default_eegmat_dir()
    dest.mkdir(parents=True, exist_ok=True)
    sums_path = pooch.retrieve(
        EEGMAT_URL + "SHA256SUMS.txt",
        known_hash=f"sha256:{EEGMAT_SUMS_SHA256}",
        fname="SHA256SUMS.txt",
        path=dest,
        progressbar=progress,
    )
    sums = parse_sha256sums(Path(sums_path).read_text("utf-8"))
    names = eegmat_data_files(sums)
    repo = pooch.create(
        path=dest, base_url=EEGMAT_URL, registry={name: f"sha256:{sums[name]}" for name in names}
    )
    for name in names:
        repo.fetch(name, progressbar=progress)
    return dest
