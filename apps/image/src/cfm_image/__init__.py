"""cfm-image: placeholder."""
