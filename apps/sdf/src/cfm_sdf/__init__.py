"""cfm-sdf: signed distance fields generated with Cumulative Flow Maps."""
