"""research.data."""
