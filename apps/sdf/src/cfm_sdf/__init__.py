"""cfm-sdf: placeholder."""
