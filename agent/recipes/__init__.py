"""Driver recipes: one TOML per driver release, loaded and validated into frozen dataclasses."""
