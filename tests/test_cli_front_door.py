"""Issue 17, acceptance 4: the CLI's front door on real EEGMAT files.

``--version``; one exit-status scheme for every command (0 done, 1 a problem found in the data, 2 could not run;
README "Exit status"); the ``eegmat`` alias of ``workload`` and "did you mean" for unknown names; ``shard`` never
runs ``split`` itself and names the command to run; no stray ``<bool>`` in ``--help``; no help text or README line
names a file outside the repository or the project's private reference ("spec §").
"""

from __future__ import annotations

import re
import shutil
import subprocess
from importlib.metadata import version
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from cli import EXIT_DATA, EXIT_INPUT, data_app, train_app

REPO = Path(__file__).resolve().parents[1]
#: One train, one val and one test subject of the Workload protocol (Subject00-25 / 26-30 / 31-35).
SUBJECTS = ("Subject00", "Subject27", "Subject33")


@pytest.fixture(scope="module")
def small_out(eegmat_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An ingest of 6 real EEGMAT files through the ``eegmat`` alias (CLI), not yet split."""
    tmp = tmp_path_factory.mktemp("front_door")
    root = tmp / "eegmat"
    root.mkdir()
    for s in SUBJECTS:
        for run in (1, 2):
            shutil.copy(eegmat_dir / f"{s}_{run}.edf", root)
    out = tmp / "out"
    res = CliRunner().invoke(data_app, ["ingest", "eegmat", str(root), "--out", str(out)])
    assert res.exit_code == 0, res.output
    return out


def _text(res) -> str:
    """The command's output with rich's line wrapping undone."""
    return " ".join(res.output.split())


def test_version_on_both_commands() -> None:
    for app in (data_app, train_app):
        res = CliRunner().invoke(app, ["--version"])
        assert res.exit_code == 0, res.output
        assert res.output.strip() == f"neurolm {version('neurolm')}"


def test_eegmat_alias_records_the_registered_name(small_out: Path) -> None:
    rec = pl.read_parquet(small_out / "recordings.parquet")
    assert rec.height == 6 and rec["source"].unique().to_list() == ["workload"]
    assert '"source": "workload"' in (small_out / "ingest_config.json").read_text()


def test_unknown_names_suggest_the_closest(tmp_path: Path) -> None:
    res = CliRunner().invoke(data_app, ["ingest", "eegmatt", str(tmp_path), "--out", str(tmp_path / "o")])
    assert res.exit_code == EXIT_INPUT
    assert "unknown source 'eegmatt'" in _text(res) and "did you mean 'workload'" in _text(res)
    res = CliRunner().invoke(data_app, ["ingest", "tuabb", str(tmp_path), "--out", str(tmp_path / "o")])
    assert res.exit_code == EXIT_INPUT and "did you mean 'tuab'" in _text(res)
    res = CliRunner().invoke(data_app, ["shard", str(tmp_path), "--task", "workloda"])
    assert res.exit_code == EXIT_INPUT and "did you mean 'workload'" in _text(res)


def test_shard_refuses_without_splits_and_names_the_command(small_out: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    shutil.copytree(small_out, out)
    res = CliRunner().invoke(data_app, ["shard", str(out), "--task", "workload"])
    assert res.exit_code == EXIT_INPUT, res.output
    assert "neurolm-data split" in _text(res) and "--protocol workload" in _text(res)
    assert not (out / "splits.parquet").exists() and not (out / "shards").exists()  # no silent split
    # splits made with one protocol, shard asked for another: refused, nothing rewritten
    assert CliRunner().invoke(data_app, ["split", str(out), "--protocol", "workload"]).exit_code == 0
    before = (out / "splits.parquet").read_bytes()
    res = CliRunner().invoke(data_app, ["shard", str(out), "--task", "workload", "--protocol", "pretrain"])
    assert res.exit_code == EXIT_INPUT and "--protocol pretrain" in _text(res)
    assert (out / "splits.parquet").read_bytes() == before and not (out / "shards").exists()
    res = CliRunner().invoke(data_app, ["shard", str(out), "--task", "workload", "--protocol", "workload"])
    assert res.exit_code == 0, res.output
    assert pl.read_parquet(out / "shards" / "workload" / "windows.parquet").height == 6 * 29


def test_exit_status_scheme(small_out: Path, tmp_path: Path) -> None:
    run = CliRunner().invoke
    missing = str(tmp_path / "missing")
    # 2: could not run (missing input, unknown name, bad option), the same for every command
    assert run(data_app, ["split", missing, "--protocol", "workload"]).exit_code == EXIT_INPUT
    assert run(data_app, ["split", str(small_out), "--protocol", "nope"]).exit_code == EXIT_INPUT
    assert run(data_app, ["shard", missing, "--task", "workload"]).exit_code == EXIT_INPUT
    assert run(data_app, ["audit", missing]).exit_code == EXIT_INPUT
    assert (
        run(data_app, ["ingest", "workload", missing, "--out", str(tmp_path / "o")]).exit_code == EXIT_INPUT
    )
    assert (
        run(train_app, ["evaluate", "--checkpoint", missing, "--shards", missing, "--out", missing]).exit_code
        == EXIT_INPUT
    )
    assert run(train_app, ["leaderboard", "run", missing]).exit_code == EXIT_INPUT
    assert run(train_app, ["vq", "--shards", missing, "--out", str(tmp_path / "r")]).exit_code == EXIT_INPUT
    assert (
        run(train_app, ["pipeline", "--root", missing, "--out", str(tmp_path / "p")]).exit_code == EXIT_INPUT
    )
    assert (
        run(data_app, ["ingest", "workload", missing, "--out", missing, "-o", "nokey"]).exit_code
        == EXIT_INPUT
    )
    assert run(data_app, ["split"]).exit_code == EXIT_INPUT  # click's usage error
    # 1: the command ran and found a problem in the data: a file that fails to ingest, a leak between splits
    bad = tmp_path / "bad"
    bad.mkdir()
    shutil.copy(small_out.parent / "eegmat" / "Subject00_1.edf", bad)
    (bad / "Subject01_1.edf").write_bytes(b"0       not an EDF header" * 10)
    res = run(data_app, ["ingest", "workload", str(bad), "--out", str(tmp_path / "bad_out")])
    assert res.exit_code == EXIT_DATA and "Subject01_1.edf" in _text(res)
    out = tmp_path / "leak"
    shutil.copytree(small_out, out)
    leaky = tmp_path / "leaky.toml"
    body = (REPO / "manifests" / "protocols" / "workload.toml").read_text()
    leaky.write_text(
        body.replace('name = "workload"', 'name = "leaky"').replace(
            "test = [\n", 'test = [\n    "Subject00",\n'
        )
    )
    res = run(data_app, ["split", str(out), "--protocol", str(leaky)])
    assert res.exit_code == EXIT_DATA and "Subject00" in _text(res)


def _all_help() -> dict[str, str]:
    """--help output of every command and sub-command of both apps, wide enough not to wrap paths."""
    runner = CliRunner()
    pages = {}
    commands = {
        data_app: [[], ["ingest"], ["split"], ["shard"], ["audit"]],
        train_app: [
            [],
            ["vq"],
            ["pretrain"],
            ["instruct"],
            ["evaluate"],
            ["pipeline"],
            ["leaderboard"],
            ["leaderboard", "run"],
            ["leaderboard", "show"],
        ],
    }
    for app, cmds in commands.items():
        for cmd in cmds:
            res = runner.invoke(app, [*cmd, "--help"], env={"COLUMNS": "400", "TERMINAL_WIDTH": "400"})
            assert res.exit_code == 0, (cmd, res.output)
            pages[" ".join([app.info.name, *cmd])] = res.output
    return pages


def test_help_has_no_stray_bool_and_no_private_reference() -> None:
    pages = _all_help()
    assert len(pages) == 14
    for name, text in pages.items():
        assert "<bool>" not in text, name
        assert "--help" in text and "--version" in pages["neurolm-data"]
        for bad in ("spec §", "neurolm-spec", "../shared", "/work/"):
            assert bad not in text, (name, bad)
        _assert_names_only_repo_files(text, name)


def _repo_files() -> set[str]:
    listed = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    paths = set(listed.split())
    paths |= {str(p.relative_to(REPO)) for p in (REPO / "docs").glob("*.md")}  # new files before their commit
    return paths | {Path(p).name for p in paths}


#: File names the README and help texts give for files the commands WRITE (not files of the repository).
OUTPUT_FILES = {"leaderboard.md"}


def _assert_names_only_repo_files(text: str, where: str) -> None:
    files = _repo_files()
    for m in re.finditer(r"[\w./-]+\.(?:py|md|toml)\b", text):
        name = m.group(0).lstrip("./")
        if name in OUTPUT_FILES or name.endswith("/leaderboard.md") or "*" in text[m.start() - 1 : m.start()]:
            continue
        if re.search(r"https://github\.com/[^)\s]*" + re.escape(name.split("/")[-1]) + r"\b", text):
            continue  # a file of the upstream (official) code, cited with its link
        assert name in files or name.split("/")[-1] in files, (
            f"{where} names {name!r}, which is not in the repo"
        )


def test_readme_names_no_file_outside_the_repo() -> None:
    readme = (REPO / "README.md").read_text()
    for i, line in enumerate(readme.splitlines(), 1):
        for bad in ("spec §", "neurolm-spec", "(spec)", "/work/"):
            assert bad not in line, f"README line {i}: {line}"
        _assert_names_only_repo_files(line, f"README line {i}")
    # the facts that the private reference stood for are in the repository's own docs, with their sources
    ref = (REPO / "docs" / "neurolm-reference.md").read_text()
    for section in ("§1.1", "§2.6", "§4.4", "§5.3", "§9.7", "§9.15"):
        assert f"§{section[1:]}" in ref
    assert "arxiv.org/abs/2409.00101" in ref and "github.com/935963004/NeuroLM" in ref


def test_leaderboard_markdown_cites_no_private_reference() -> None:
    """The footnotes and the reported rows' provenance that ``leaderboard.md`` prints."""
    from types import SimpleNamespace

    from neurolm_train.leaderboard.render import _footnotes
    from neurolm_train.leaderboard.reported import load_reported

    rows = load_reported()
    assert rows
    text = "\n".join(
        _footnotes(SimpleNamespace(n_resamples=1000)) + [f"{r.via} {r.citation} {r.note or ''}" for r in rows]
    )
    for bad in ("spec §", "neurolm-spec", "../shared", "/work/"):
        assert bad not in text, bad
    assert "docs/neurolm-reference.md §5.3" in text


def test_readme_python_api_names_exist() -> None:
    """Every ``from X import Y`` of the README's Python API example imports."""
    import importlib

    readme = (REPO / "README.md").read_text()
    block = readme.split("## Python API", 1)[1].split("```python", 1)[1].split("```", 1)[0]
    imports = re.findall(r"^from ([\w.]+) import (.+)$", block, flags=re.M)
    assert len(imports) == 2
    for module, names in imports:
        mod = importlib.import_module(module)
        for name in names.split(","):
            assert callable(getattr(mod, name.strip())), (module, name)
