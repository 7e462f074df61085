"""A checkpoint from a stranger is data: its stored data locations never become commands or URLs."""

from __future__ import annotations

import json
import shutil

import pytest
from cfm_core.cli import main
from cfm_core.training import latest_checkpoint


def _with_stored_data(run, tmp_path, **data):
    """A copy of ``run``'s newest checkpoint whose stored data config is changed by ``data``."""
    copy = tmp_path / "stranger"
    shutil.copytree(latest_checkpoint(run), copy)
    meta = json.loads((copy / "meta.json").read_text())
    meta["config"]["data"].update(data)
    (copy / "meta.json").write_text(json.dumps(meta))
    return copy


@pytest.mark.parametrize(
    "data",
    [
        {"shards": "pipe:touch {marker}"},
        {"shards": "{folder}/a.tar::pipe:touch {marker}"},
        {"shards": "http://127.0.0.1:9/shard-{{000000..000001}}.tar"},
        {"folder": "file://{folder}"},
    ],
    ids=["pipe", "pipe-in-a-list", "http", "url-folder"],
)
def test_a_stored_pipe_or_url_is_never_run_or_fetched(tiny_image_run, tmp_path, capsys, data):
    marker = tmp_path / "marker"
    data = {k: v.format(marker=marker, folder=tmp_path) for k, v in data.items()}
    checkpoint = _with_stored_data(tiny_image_run, tmp_path, **data)
    out = tmp_path / "eval"
    argv = ["--checkpoint", str(checkpoint), "--n", "10", "--cfm-steps", "1", "--baseline-steps", "--out", str(out)]
    assert main(["image", "eval", *argv]) == 2
    err = capsys.readouterr().err
    assert "is not a plain local path" in err and str(checkpoint) in err
    assert len(err.strip().splitlines()) == 1
    assert not marker.exists() and not out.exists()
    grid = tmp_path / "grid.png"
    assert main(["image", "sample", "--checkpoint", str(checkpoint), "--n", "2", "--grid", str(grid)]) == 2
    assert not marker.exists() and not grid.exists()
