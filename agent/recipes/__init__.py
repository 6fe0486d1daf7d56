"""Driver recipes: one TOML per driver release, loaded and validated into frozen dataclasses."""

from pathlib import Path

# The shipped recipes in a checkout or an editable install (images copy them elsewhere, see config).
RELEASES_DIR = Path(__file__).resolve().parents[2] / "build" / "releases"
