"""Tests of the Helm chart charts/intel-gpu-driver (a package, so its conftest does not shadow tests/conftest)."""
