"""cfm-geometry: placeholder."""
