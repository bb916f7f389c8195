"""research.decoding."""
