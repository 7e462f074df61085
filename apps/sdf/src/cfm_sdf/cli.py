"""``cfm sdf``: registered through the ``cfm.apps`` entry point of cfm-sdf."""

from cfm_core.cli import App, Command, lazy
from cfm_core.cli.common import info_command

APP = App(
    name="sdf",
    help="signed distance fields: shapes from 64 surface points (or from noise), meshed",
    commands=(
        Command(
            "train",
            "train CFM or the multi-step baseline on procedural shapes or a folder",
            lazy("cfm_sdf.commands:run_train"),
        ),
        Command(
            "sample",
            "generate a shape from surface points (.npy or mesh); mesh + PNG",
            lazy("cfm_sdf.commands:run_sample"),
        ),
        Command(
            "eval",
            "Chamfer / F-score / IoU / SDF error and time per shape at each NFE",
            lazy("cfm_sdf.commands:run_eval"),
        ),
        Command(
            "prepare",
            "mesh folder -> SDF samples (.npz) with a report of skipped meshes",
            lazy("cfm_sdf.commands:run_prepare"),
        ),
        info_command("sdf"),
    ),
)
