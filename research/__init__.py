"""A JAX/Flax research codebase: architecture x objective x scale."""
