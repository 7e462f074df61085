"""cfm-pose: skeleton joints from point clouds with Cumulative Flow Maps (``cfm pose``)."""

__version__ = "0.1.0"
