"""research.train."""
