"""terms layer."""
