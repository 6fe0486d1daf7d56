"""Intel data-center GPU driver agent: build, load, verify and unload the i915 backport on a node."""

__version__ = "0.1.0"
