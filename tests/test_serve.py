"""`alertpilot serve`'s Prometheus multiprocess directory, chosen without starting gunicorn.

tests/test_processes.py runs two real `serve`s side by side.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from webhook.serve import prepare_metrics_dir


@pytest.fixture
def scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The temp dir `serve` makes its private directory in, as TMPDIR would set it."""
    directory = tmp_path / "tmp"
    directory.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(directory))
    return directory


def test_two_serves_get_their_own_metrics_dirs_and_keep_each_others_files(
    scratch: Path,
) -> None:
    first = prepare_metrics_dir({})
    (first.path / "counter_101.db").write_bytes(b"first's counts")
    second = prepare_metrics_dir({})

    assert first.path != second.path
    assert first.owned and second.owned
    assert {first.path.parent, second.path.parent} == {scratch}
    assert (first.path / "counter_101.db").read_bytes() == b"first's counts"
    assert list(second.path.iterdir()) == []


def test_private_metrics_dir_leaves_the_old_shared_one_alone(scratch: Path) -> None:
    shared = scratch / "alertpilot-metrics"  # what earlier releases used, maybe still in use
    shared.mkdir()
    (shared / "counter_7.db").write_bytes(b"another instance's counts")

    private = prepare_metrics_dir({})

    assert private.path != shared
    assert (shared / "counter_7.db").exists()


def test_configured_metrics_dir_is_used_and_only_its_stale_files_go(tmp_path: Path) -> None:
    configured = tmp_path / "metrics"
    configured.mkdir()
    (configured / "counter_1.db").write_bytes(b"stale")
    (configured / "README").write_text("not prometheus_client's")
    (tmp_path / "beside.db").write_bytes(b"not in the directory")

    chosen = prepare_metrics_dir({"PROMETHEUS_MULTIPROC_DIR": str(configured)})

    assert (chosen.path, chosen.owned) == (configured, False)
    assert sorted(p.name for p in configured.iterdir()) == ["README"]
    assert (tmp_path / "beside.db").exists()


def test_configured_metrics_dir_is_made_when_missing(tmp_path: Path) -> None:
    configured = tmp_path / "scratch" / "metrics"

    chosen = prepare_metrics_dir({"PROMETHEUS_MULTIPROC_DIR": str(configured)})

    assert chosen.path == configured and configured.is_dir()
    assert not chosen.owned
