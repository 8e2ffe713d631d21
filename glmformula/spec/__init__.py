"""Model-spec files (TOML)."""

from .spec import DataSpec, ModelSpec, load_spec, run_spec

__all__ = ["ModelSpec", "DataSpec", "load_spec", "run_spec"]
