"""Output destinations checked before any work, atomic writes, and write failures in one line."""

from __future__ import annotations

import errno
import os

import pytest
from cfm_core.io import OutputError, check_output_dir, check_output_file, save_json, write_atomically


def test_an_output_file_is_refused_before_any_work_when_it_cannot_be_written(tmp_path):
    (tmp_path / "folder.npy").mkdir()
    (tmp_path / "a-file").write_text("x")
    assert check_output_file(tmp_path / "new" / "deeper" / "x.npy", "--out", (".npy",)) == tmp_path / "new/deeper/x.npy"
    cases = [
        (tmp_path / "x.txt", "--out: .*x.txt must end in .npy"),
        (tmp_path / "folder.npy", "--out: .*folder.npy is a folder; give a file name"),
        (tmp_path / "a-file" / "x.npy", "--out: cannot create the folder .*a-file: .*a-file is a file"),
    ]
    for path, message in cases:
        with pytest.raises(OutputError, match=message):
            check_output_file(path, "--out", (".npy",))


def test_an_output_folder_is_refused_when_it_is_a_file(tmp_path):
    (tmp_path / "a-file").write_text("x")
    assert check_output_dir(tmp_path / "runs" / "a", "--train.output-dir") == tmp_path / "runs" / "a"
    with pytest.raises(OutputError, match="--train.output-dir: .*a-file is a file; give a folder"):
        check_output_dir(tmp_path / "a-file", "--train.output-dir")
    with pytest.raises(OutputError, match="cannot create the folder"):
        check_output_dir(tmp_path / "a-file" / "run", "--train.output-dir")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_folder_without_write_permission_is_refused(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(OutputError, match="cannot write into .*locked \\(permission denied\\)"):
            check_output_file(locked / "x.png", "--grid")
    finally:
        locked.chmod(0o700)


def test_a_failed_write_keeps_the_old_file_whole_and_names_the_target_and_the_cause(tmp_path):
    target = save_json(tmp_path / "metrics.json", {"old": 1})
    before = target.read_bytes()

    def half_then_full(file):
        file.write(b'{"new": ')
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OutputError, match=f"cannot write {target}: No space left on device"):
        write_atomically(target, half_then_full)
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]  # no temporary left
    with pytest.raises(OutputError, match="it is a folder"):
        save_json(tmp_path, {})
