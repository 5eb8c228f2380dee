"""anchorlog client."""
