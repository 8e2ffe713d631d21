"""bases layer."""
