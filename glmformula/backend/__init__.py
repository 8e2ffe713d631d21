"""backend layer."""
