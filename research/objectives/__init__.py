"""research.objectives."""
