"""``cfm toy``: registered through the ``cfm.apps`` entry point of cfm-toy."""

from cfm_core.cli.app import App, Command, lazy
from cfm_core.cli.common import info_command

APP = App(
    name="toy",
    help="2-D toy distributions: fast checks of every formulation",
    commands=(
        Command(
            "train",
            "train CFM or the multi-step baseline on a 2-D distribution",
            lazy("cfm_toy.commands:run_train"),
        ),
        Command("sample", "sample a trained model (NPY + PNG)", lazy("cfm_toy.commands:run_sample")),
        Command(
            "eval",
            "energy distance / sliced W2 at each NFE; plots of samples and quality vs NFE",
            lazy("cfm_toy.commands:run_eval"),
        ),
        Command(
            "demo",
            "train CFM and its baseline side by side, then evaluate (the README's main job)",
            lazy("cfm_toy.commands:run_demo"),
        ),
        info_command("toy"),
    ),
)
