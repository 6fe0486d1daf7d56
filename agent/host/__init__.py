"""Everything that touches the host: its paths, its files and the commands run on it."""
