"""Image tests: Dockerfile.builder and Dockerfile.loader really built (buildah), run (podman), pushed and pulled."""
