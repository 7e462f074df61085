"""cfm-pose: skeleton joints from point clouds with Cumulative Flow Maps (``cfm pose``)."""
