"""What the model generates for a shape, and how joints come back out of it.

The data kind picks the representation (:mod:`cfm_pose.config`):

* **fixed** (one procedural template, SMPL, SMPL-X): ``x = ((joints - c) * s).reshape(B, 3 J)``, the joints
  in the layout's fixed order; decoding reshapes and maps back, so every joint keeps its name and
  parent.
* **per_point** (mixed templates, RigNet): ``x = (target(p_i) - c) * s``, one row per input surface
  point ``p_i`` with its PDT target (:func:`cfm_pose.representations.pdt_targets`); decoding maps
  the generated points back and clusters them into joints (:func:`cfm_pose.clustering.
  extract_joints`), so the joint count is whatever the clusters say and there are no names or
  parents.

``c = (0, 0.5, 0)`` is the centre of the unit-box shape frame and ``s`` the config's
``data_scale``. The condition is always the surface points ``(B, N, 3)`` in the shape frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from cfm_pose.body_families import SMPL, SMPLX
from cfm_pose.clustering import extract_joints
from cfm_pose.config import ExtractionConfig, PoseTrainConfig
from cfm_pose.representations import fixed_topology_batch, pdt_batch, vector_to_joints
from cfm_pose.sources import ShapeBatch
from cfm_pose.templates import get_template

FRAME_CENTRE = np.array([0.0, 0.5, 0.0])


@dataclass(frozen=True)
class JointLayout:
    """The joint names and parents of a fixed topology."""

    names: tuple[str, ...]
    parents: np.ndarray


@dataclass(frozen=True)
class PoseEncoding:
    """The representation of one run (module doc); ``layout`` is set for fixed topologies."""

    kind: Literal["fixed", "per_point"]
    scale: float
    rule: str = "bone"
    layout: JointLayout | None = None

    @property
    def data_dim(self) -> int:
        """Features per generated row: ``3 J`` (fixed) or 3 (per point)."""
        return 3 * len(self.layout.names) if self.layout is not None else 3

    def data_shape(self, n_points: int) -> tuple[int, ...]:
        """The shape of one generated sample (without the batch axis)."""
        return (self.data_dim,) if self.kind == "fixed" else (n_points, 3)

    def encode(self, shapes: ShapeBatch) -> tuple[Tensor, Tensor]:
        """``(x, cond)`` of a batch: the generated tensor and the surface points."""
        if self.kind == "fixed":
            names = shapes.skeletons[0].names
            if names != self.layout.names:
                raise ValueError(
                    f"fixed-topology data has joints {names[:3]}..., the model expects {self.layout.names[:3]}..."
                )
            points, x = fixed_topology_batch(shapes.points, shapes.skeletons)
            centre = torch.as_tensor(np.tile(FRAME_CENTRE, len(names)), dtype=torch.float32)
        else:
            points, x = pdt_batch(shapes.points, shapes.skeletons, self.rule)
            centre = torch.as_tensor(FRAME_CENTRE, dtype=torch.float32)
        return (x - centre) * self.scale, points

    def to_shape_frame(self, x: Tensor) -> np.ndarray:
        """Generated ``x`` as points in the shape frame: joints ``(B, J, 3)`` or ``(B, N, 3)``."""
        x = x.detach().float().cpu()
        if self.kind == "fixed":
            x = vector_to_joints(x)
        return x.double().numpy() / self.scale + FRAME_CENTRE

    def joints(self, x: Tensor, extraction: ExtractionConfig) -> list[np.ndarray]:
        """The predicted joint set ``(K_b, 3)`` of each sample, in the shape frame (module doc)."""
        points = self.to_shape_frame(x)
        if self.kind == "fixed":
            return list(points)
        return [extract_joints(p, extraction.bandwidth, extraction.min_count) for p in points]

    def normalisation(self) -> dict:
        """JSON record of the map between the shape frame and the generated coordinates."""
        return {
            "shape_frame": "RigNet: unit box, centred in x and z, standing on y = 0",
            "generated": "(p - centre) * scale",
            "centre": FRAME_CENTRE.tolist(),
            "scale": self.scale,
            "representation": self.kind,
        }


def encoding_for(cfg: PoseTrainConfig) -> PoseEncoding:
    """The representation a train config implies (module doc)."""
    if cfg.data == "smpl":
        # training saves the detected family; "auto" in a saved run predates SMPL-X support
        family = SMPLX if cfg.smpl.model_type == "smplx" else SMPL
        layout = JointLayout(family.names, family.parents)
    elif cfg.data == "procedural" and cfg.procedural.template != "mixed":
        template = get_template(cfg.procedural.template)
        layout = JointLayout(template.names, template.parents)
    else:
        return PoseEncoding("per_point", cfg.data_scale, cfg.pdt_rule)
    return PoseEncoding("fixed", cfg.data_scale, cfg.pdt_rule, layout)
