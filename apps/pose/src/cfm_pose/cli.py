"""``cfm pose``: registered through the ``cfm.apps`` entry point of cfm-pose."""

from cfm_core.cli.app import App, Command, lazy
from cfm_core.cli.common import info_command

APP = App(
    name="pose",
    help="skeleton joints from a shape's point cloud (procedural characters, SMPL, RigNet)",
    commands=(
        Command(
            "train",
            "train CFM or the multi-step baseline (procedural, smpl or rignet data)",
            lazy("cfm_pose.commands:run_train"),
        ),
        Command(
            "sample", "predict the joints of a shape file (JSON + NPY + PNG)", lazy("cfm_pose.commands:run_sample")
        ),
        Command(
            "eval",
            "CD-J2J / IoU / P / R or MPJPE at each NFE on held-out shapes, timed",
            lazy("cfm_pose.commands:run_eval"),
        ),
        Command(
            "convert-smpl",
            "rewrite an SMPL .pkl (chumpy pickles too) as a clean .pkl/.npz",
            lazy("cfm_pose.commands:run_convert_smpl"),
        ),
        info_command("pose"),
    ),
)
