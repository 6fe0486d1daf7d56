"""The driver build: sources, kernel headers, the DKMS-style make run, collection, signing, manifest."""
