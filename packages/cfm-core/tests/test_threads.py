"""torch's CPU thread count: ``configure_threads`` and ``cfm --threads``."""

from __future__ import annotations

import pytest
import torch
from cfm_core.cli import main
from cfm_core.threads import THREAD_VARIABLES, configure_threads


@pytest.fixture(autouse=True)
def restore_threads(monkeypatch):
    before = torch.get_num_threads()
    for name in THREAD_VARIABLES:  # configure_threads fills unset variables in: undo that too
        monkeypatch.setenv(name, "1")
        monkeypatch.delenv(name)
    yield
    torch.set_num_threads(before)


def test_one_thread_unless_asked():
    torch.set_num_threads(3)
    assert configure_threads() == 1 == torch.get_num_threads()


def test_explicit_count_wins():
    assert configure_threads(3) == 3 == torch.get_num_threads()


def test_environment_is_respected(monkeypatch):
    torch.set_num_threads(3)  # what torch itself reads from OMP_NUM_THREADS=3 at start-up
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert configure_threads() == 3 == torch.get_num_threads()


def test_unset_variables_follow_the_count():
    import os

    configure_threads(2)
    assert [os.environ[name] for name in THREAD_VARIABLES] == ["2", "2"]


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_bad_counts_are_refused(bad):
    with pytest.raises(ValueError, match="threads must be a positive integer"):
        configure_threads(bad)


def test_cfm_threads_option(tmp_path, capsys):
    missing = str(tmp_path / "missing")
    assert main(["--threads", "2", "toy", "info", "--checkpoint", missing]) == 2
    assert torch.get_num_threads() == 2
    assert "checkpoint or run directory not found" in capsys.readouterr().err
    assert main(["--threads=3", "toy", "info", "--checkpoint", missing]) == 2
    assert torch.get_num_threads() == 3


@pytest.mark.parametrize(
    "argv", [["--threads", "0", "toy"], ["--threads=x", "toy"], ["--threads"], ["--threadsx", "2"]]
)
def test_cfm_threads_option_refuses_bad_values(argv, capsys):
    assert main(argv) == 2
    assert "cfm: error:" in capsys.readouterr().err
