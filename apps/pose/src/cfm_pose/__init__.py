"""cfm-pose: placeholder."""
