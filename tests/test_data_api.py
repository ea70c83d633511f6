"""Issue 17, acceptance 1: the Python data API on real EEGMAT shards.

The NumPy/DataFrame view, the PyTorch dataset, the ``mne.EpochsArray`` export and the braindecode dataset all
return the windows and labels of ``windows.parquet`` (checked window by window against ``window_hash``, the
content hash the shard writer stored), and a braindecode model trains one epoch on the braindecode dataset.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from neurolm_data.api import WindowsError, get_data, load_windows, to_epochs
from neurolm_data.ingest import run_ingest
from neurolm_data.shard import run_shard
from neurolm_data.split import run_split
from neurolm_data.store import content_hash
from neurolm_train.datasets import ShardWindows, to_braindecode
from neurolm_train.shardio import shard_entries

#: Two train subjects, one val and one test subject of the Workload protocol (Subject00-25 / 26-30 / 31-35).
SUBJECTS = ("Subject00", "Subject01", "Subject27", "Subject33")


@pytest.fixture(scope="module")
def out(eegmat_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("data_api")
    root = tmp / "eegmat"
    root.mkdir()
    for s in SUBJECTS:
        for run in (1, 2):
            shutil.copy(eegmat_dir / f"{s}_{run}.edf", root)
    out = tmp / "out"
    assert run_ingest("workload", root, out, workers=1).n_failed == 0
    run_split(out, "workload")
    run_shard(out, "workload")
    return out


def _manifest(out: Path) -> pl.DataFrame:
    return pl.read_parquet(out / "shards" / "workload" / "windows.parquet")


def test_numpy_view_matches_windows_parquet(out: Path) -> None:
    rows = _manifest(out)
    X, y, meta = get_data(out, "workload")
    assert X.shape == (8 * 29, 19, 800) and X.dtype == np.float32
    assert meta["key"].tolist() == rows["key"].to_list()
    assert y.tolist() == rows["label"].to_list()
    assert [content_hash(np.ascontiguousarray(x)) for x in X] == rows["window_hash"].to_list()
    assert sorted(set(y.tolist())) == [0, 1]
    test = load_windows(out, "workload", split="test")
    assert set(test.metadata["subject"].to_list()) == {"Subject33"} and test.x.shape[0] == 58
    assert test.channels[:3] == ("FP1", "FP2", "F3") and test.classes
    np.testing.assert_array_equal(test.x, X[(meta["split"] == "test").to_numpy()])


def test_torch_dataset_matches(out: Path) -> None:
    rows = _manifest(out)
    X, y, _ = get_data(out, "workload")
    ds = ShardWindows(out, "workload")
    assert len(ds) == rows.height
    loader = torch.utils.data.DataLoader(ds, batch_size=50, shuffle=False, num_workers=0)
    xs, ys, keys = [], [], []
    for xb, yb, mb in loader:
        xs.append(xb)
        ys.append(yb)
        keys += list(mb["key"])
    assert keys == rows["key"].to_list()
    np.testing.assert_array_equal(torch.cat(xs).numpy(), X)
    assert torch.cat(ys).tolist() == y.tolist()
    x0, y0, m0 = ShardWindows(out, "workload", split="val")[0]
    assert x0.shape == (19, 800) and m0["split"] == "val" and m0["subject"] == "Subject27" and y0 in (0, 1)


def test_mne_epochs_export(out: Path) -> None:
    windows = load_windows(out, "workload")
    epochs = to_epochs(windows)
    assert epochs.ch_names[:3] == ["Fp1", "Fp2", "F3"] and len(epochs.ch_names) == 19
    np.testing.assert_allclose(epochs.get_data(copy=True) * 1e6, windows.x, rtol=1e-6, atol=1e-9)
    assert epochs.events[:, 2].tolist() == windows.y.tolist()
    assert set(epochs.event_id) == set(windows.classes)
    assert epochs.metadata["key"].tolist() == windows.metadata["key"].to_list()
    pos = np.array([ch["loc"][:3] for ch in epochs.info["chs"]])
    assert (
        np.isfinite(pos).all() and (np.abs(pos).sum(axis=1) > 0).all()
    )  # every channel placed by the montage
    assert epochs.info["sfreq"] == 200.0
    assert len(epochs["subject == 'Subject33'"]) == 58


def test_braindecode_dataset_and_one_epoch(out: Path) -> None:
    from braindecode.models import ShallowFBCSPNet

    windows = load_windows(out, "workload")
    by_key = {k: i for i, k in enumerate(windows.metadata["key"].to_list())}
    bd = to_braindecode(out, "workload")
    assert len(bd) == windows.x.shape[0]
    seen = set()
    for ds in bd.datasets:
        keys = ds.windows.metadata["key"].tolist()
        for j, key in enumerate(keys):
            x, target, crop = ds[j]
            i = by_key[key]
            np.testing.assert_allclose(x * 1e6, windows.x[i], rtol=1e-5, atol=1e-6)
            assert target == windows.y[i] and crop == [0, 0, 800]
            seen.add(key)
    assert seen == set(by_key)
    splits = bd.split("split")
    assert sorted(splits) == ["test", "train", "val"] and len(splits["train"]) == 4 * 29

    torch.manual_seed(0)
    model = ShallowFBCSPNet(
        n_chans=19, n_outputs=2, n_times=800, final_conv_length="auto", add_log_softmax=False
    )
    before = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loader = torch.utils.data.DataLoader(splits["train"], batch_size=16, shuffle=True)
    losses = []
    model.train()
    for xb, yb, _ in loader:  # one epoch
        logits = model(xb * 1e4)  # V -> units of 100 µV (docs/neurolm-reference.md §1.1)
        loss = torch.nn.functional.cross_entropy(logits, yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert len(losses) == 8 and all(np.isfinite(losses))
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_changed_shard_is_an_error(out: Path, tmp_path: Path) -> None:
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    shard = sorted((copy / "shards" / "workload" / "train").glob("*.tar"))[0]
    _key, members = shard_entries(str(shard))[0]
    offset = dict((sfx, off) for sfx, off, _n in members)["eeg.npy"]
    data = bytearray(shard.read_bytes())
    data[offset + 200] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(WindowsError, match="window_hash"):
        load_windows(copy, "workload", split="train")
    ds = ShardWindows(copy, "workload", split="train")
    with pytest.raises(WindowsError, match=shard.name):
        ds[0]
