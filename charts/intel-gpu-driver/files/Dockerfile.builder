# PLACEHOLDER: replaced by a byte-for-byte copy of the repository's Dockerfile.builder as soon as
# that file exists (tests/chart/test_chart_render.py checks the two are equal).
ARG BASE_IMAGE=ubuntu:22.04
FROM ${BASE_IMAGE}
ARG KERNEL_FULL_VERSION
ARG RECIPE
RUN echo "placeholder: Dockerfile.builder is not in the repository yet" && exit 1
