"""cfm-geometry: one shape as a distribution of surface points (Geometry Distributions), trained
as a Cumulative Flow Map; commands in :mod:`cfm_geometry.commands`."""

__version__ = "0.1.0"
