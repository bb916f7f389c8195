"""research.emergence."""
