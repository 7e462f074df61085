"""cfm-core works without its optional extras (tyro: ``cli``, matplotlib: ``plot``), and says how
to install one when a feature needs it."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import sys
for name in ("tyro", "matplotlib", "matplotlib.figure"):
    sys.modules[name] = None  # as if not installed: importing it raises ImportError
import cfm_core, cfm_core.cli, cfm_core.cli.skeleton, cfm_core.evaluation, cfm_core.training
from cfm_core.cli import parse_config
from cfm_core.cli.skeleton import SampleOptions
print("core imports: ok")
try:
    parse_config(SampleOptions, ["--checkpoint", "c"], prog="t")
except ImportError as err:
    print(err)
try:
    import cfm_core.plotting
except ImportError as err:
    print(err)
"""


def test_core_without_cli_and_plot_extras():
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "core imports: ok"
    assert "needs tyro, the 'cli' extra of cfm-core: pip install 'cfm-core[cli]'" in lines[1]
    assert "needs matplotlib, the 'plot' extra of cfm-core: pip install 'cfm-core[plot]'" in lines[2]
