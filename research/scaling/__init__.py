"""research.scaling."""
