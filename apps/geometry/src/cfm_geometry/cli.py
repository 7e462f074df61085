"""``cfm geometry``: registered through the ``cfm.apps`` entry point of cfm-core."""

from cfm_core.cli import App, Command, lazy
from cfm_core.cli.common import info_command

APP = App(
    name="geometry",
    help="one shape as a distribution of surface points (Geometry Distributions), in 1-6 steps",
    commands=(
        Command(
            "train",
            "train CFM or the multi-step baseline on a mesh or a built-in shape",
            lazy("cfm_geometry.commands:run_train"),
        ),
        Command(
            "sample",
            "generate millions of surface points (PLY/NPY, PNG views)",
            lazy("cfm_geometry.commands:run_sample"),
        ),
        Command(
            "eval",
            "Chamfer / F-score / Hausdorff at each NFE vs the baseline; plots",
            lazy("cfm_geometry.commands:run_eval"),
        ),
        info_command("geometry"),
    ),
)
