"""research.parallel."""
