"""``cfm image``: registered through the ``cfm.apps`` entry point of cfm-image."""

from cfm_core.cli import App, Command, lazy
from cfm_core.cli.common import info_command

APP = App(
    name="image",
    help="images: built-in digits/faces, image folders or webdataset shards; two-time UNet",
    commands=(
        Command(
            "train",
            "train CFM or the multi-step baseline (presets: quick, digits, faces, cifar)",
            lazy("cfm_image.commands:run_train"),
        ),
        Command(
            "sample",
            "sample a trained model at any number of steps (PNG grid / files)",
            lazy("cfm_image.commands:run_sample"),
        ),
        Command(
            "eval",
            "quality at each NFE (digit-classifier Frechet distance, accuracy, "
            "entropies; FID with local weights), grids and plots",
            lazy("cfm_image.commands:run_eval"),
        ),
        Command(
            "demo",
            "train CFM on the digits in minutes on a CPU, then evaluate it at 1, 2, 4 "
            "steps beside the multi-step baseline (the README's main job)",
            lazy("cfm_image.commands:run_demo"),
        ),
        Command(
            "pack",
            "pack a folder of images into webdataset shards with a meta.json (for --data.shards)",
            lazy("cfm_image.pack_shards:main"),
        ),
        info_command("image"),
    ),
)
