"""Tests of the driver build (agent/build): real builds of the test driver against Debian's kernel headers."""
