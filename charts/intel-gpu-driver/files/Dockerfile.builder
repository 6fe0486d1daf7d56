# Builds the Intel i915 backport driver for ONE kernel into a driver image.
#
#   buildah build -f Dockerfile.builder --build-arg KERNEL_FULL_VERSION=5.15.0-135-generic \
#       -t intel-gpu-driver:5.15.0-135-generic .
#
# The driver image holds the driver tree in the layout KMM expects, and can load it itself:
#   /opt/lib/modules/<KERNEL_FULL_VERSION>/updates/**.ko  + modules.dep (depmod -b /opt <kver>)
#   /opt/lib/modules/<KERNEL_FULL_VERSION>/host -> /host/lib/modules/<KERNEL_FULL_VERSION>
#                           the node's own modules, where KMM's worker (and the agent's pod) mount
#                           them: modules.dep names the driver's in-tree dependencies through this
#                           link (host/kernel/drivers/gpu/drm/drm.ko...), so `modprobe -d /opt i915`
#                           loads drm and its helpers from the node even on a fresh boot. depmod saw
#                           them at build time in the kernel's modules package (build stage only).
#   /firmware/<name>        e.g. /firmware/i915/dg2_guc_70.40.1.bin (KMM firmwarePath: /firmware)
#   /manifest.json          recipe, kernel, sha256, srcversion and vermagic of every file
#   /bin/sh and cp          KMM 2.2+ copies the tree out of the image with them
#   kmod, Python, the agent `intel-gpu-agent run` loads this very tree (INTEL_GPU_AGENT_DRIVER_TREE=/)
#
# Build context: this repository, or nothing at all. KMM's in-cluster build (the chart hands KMM
# this file) has only the Dockerfile as its context: then the agent, the shipped recipes and the
# driver recipe come from AGENT_SOURCE, a source archive (.tar.gz) of this project pinned by
# AGENT_SOURCE_SHA256. A build with neither fails and says so.
#
# Build args (each re-declared in every stage that uses it):
#   KERNEL_FULL_VERSION  the target kernel release (`uname -r` on the nodes); required, set by KMM.
#                        Never the build machine's kernel.
#   KERNEL_VERSION, MOD_NAME, MOD_NAMESPACE   set by KMM; MOD_* go into a label (KERNEL_VERSION unused)
#   RECIPE               a recipe name (build/releases) or a path inside the build context / archive
#   BASE_IMAGE           Ubuntu or Debian image whose package sources have linux-headers-<kver> and
#                        the kernel's modules (the nodes' distribution and release); a mirror behind a proxy
#   KERNEL_MODULES_PACKAGES  the packages holding /lib/modules/<kver>/kernel, read by depmod only
#                        (never in the image); default by distribution: linux-image-<kver> on Debian,
#                        linux-modules-<kver> and linux-modules-extra-<kver> (drm helpers, i915) on Ubuntu
#   HTTP_PROXY, HTTPS_PROXY, NO_PROXY   for apt, pip and the driver downloads (not kept in the image)
#   AGENT_SOURCE, AGENT_SOURCE_SHA256   a source archive URL of this project (.tar.gz with one top
#                        folder, as a forge's tag archive or `git archive --prefix=NAME/` makes it) and
#                        its sha256; used only when the build context has no pyproject.toml
#   DRIVER_SOURCE, DRIVER_SOURCE_SHA256      a mirror of the release's source tarball instead of the
#   DRIVER_FIRMWARE, DRIVER_FIRMWARE_SHA256  recipe's URL (https, or http on loopback), and its sha256
#                        when it is another file than the recipe's; the firmware as a tarball of the
#                        firmware repository at the release's tag. Empty: the recipe's own URLs.
#   CA_BUNDLE            PEM file of extra CA certificates (TLS-intercepting proxies), used when it
#                        exists at build time by apt, pip, the AGENT_SOURCE download and the agent's
#                        own downloads (`intel-gpu-agent build --ca-bundle`): a KMM build secret
#                        `ca-bundle` (key ca.crt) is mounted at the default path; with buildah:
#                        --volume host.pem:/run/secrets/ca-bundle/ca.crt
#   VERSION, SOURCE_URL  the agent's version and where the source is published, for the labels
#
# Every RUN starts with `set -eu`: SHELL (bash, pipefail) is honoured by Docker and kaniko, but
# buildah and podman ignore it when they write OCI images.
ARG BASE_IMAGE=ubuntu:22.04

# --- runtime: Python >= 3.11 and kmod, shared by the build stage and the image ---------------------
FROM ${BASE_IMAGE} AS runtime
ARG HTTP_PROXY
ARG HTTPS_PROXY
ARG NO_PROXY
SHELL ["/bin/bash", "-euo", "pipefail", "-c"]
# Versions are those of BASE_IMAGE's release: pinning them here would break every other base.
# python3 is 3.10 on Ubuntu 22.04: take python3.11 there.
# hadolint ignore=DL3008
RUN set -eu; \
    export http_proxy="${HTTP_PROXY:-}" https_proxy="${HTTPS_PROXY:-}" no_proxy="${NO_PROXY:-}"; \
    export DEBIAN_FRONTEND=noninteractive; \
    apt-get update -qq; \
    py=python3; \
    case "$(apt-cache show --no-all-versions python3 | sed -n 's/^Version: //p')" in \
      3.[0-9].*|3.10.*) py=python3.11 ;; \
    esac; \
    apt-get install -y -qq --no-install-recommends "$py" kmod >/dev/null; \
    rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt /var/log/dpkg.log

# --- build: toolchain, headers for exactly KERNEL_FULL_VERSION, the agent, the driver -------------
FROM runtime AS build
SHELL ["/bin/bash", "-euo", "pipefail", "-c"]
ARG BASE_IMAGE
ARG KERNEL_FULL_VERSION
ARG KERNEL_MODULES_PACKAGES=""
ARG HTTP_PROXY
ARG HTTPS_PROXY
ARG NO_PROXY
ARG CA_BUNDLE=/run/secrets/ca-bundle/ca.crt
# pip, the agent's downloads and Python's urllib all trust the system store (plus CA_BUNDLE).
ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
# Toolchain of the i915 backport build; the headers package pulls in the compiler its kernel was
# built with. Its name carries the kernel release, so there is nothing else to pin. The kernel's
# own modules are only unpacked (dpkg-deb -x, no maintainer scripts) into /usr/src/kernel-modules for
# the depmod below: never installed, never in the image. Every missing package is named at once.
# ($modules is a list of package names: split on purpose; apt-get download writes to the current folder.)
# hadolint ignore=DL3003,DL3008,SC2086
RUN set -eu; \
    export http_proxy="${HTTP_PROXY:-}" https_proxy="${HTTPS_PROXY:-}" no_proxy="${NO_PROXY:-}"; \
    export DEBIAN_FRONTEND=noninteractive; \
    if [ -z "${KERNEL_FULL_VERSION:-}" ]; then \
      echo "error: build arg KERNEL_FULL_VERSION is empty: set it to the nodes' kernel release (uname -r there)" >&2; \
      exit 2; \
    fi; \
    headers="linux-headers-${KERNEL_FULL_VERSION}"; \
    modules="${KERNEL_MODULES_PACKAGES:-}"; \
    if [ -z "$modules" ]; then \
      distribution="$(. /etc/os-release && echo "${ID:-}")"; \
      case "$distribution" in \
        ubuntu) modules="linux-modules-${KERNEL_FULL_VERSION} linux-modules-extra-${KERNEL_FULL_VERSION}" ;; \
        *) modules="linux-image-${KERNEL_FULL_VERSION}" ;; \
      esac; \
    fi; \
    apt-get update -qq; \
    missing=0; \
    for package in "$headers" $modules; do \
      candidate="$(apt-cache policy "$package" | sed -n 's/^ *Candidate: //p')"; \
      if [ -n "$candidate" ] && [ "$candidate" != "(none)" ]; then continue; fi; \
      missing=1; \
      if [ "$package" = "$headers" ]; then \
        echo "error: no kernel headers for kernel ${KERNEL_FULL_VERSION}: package ${headers} is not in the package sources of ${BASE_IMAGE}; use a BASE_IMAGE of the nodes' distribution release that ships ${headers} (or a mirror of it)" >&2; \
      else \
        echo "error: no kernel modules for kernel ${KERNEL_FULL_VERSION}: package ${package} is not in the package sources of ${BASE_IMAGE}; the image's modules.dep needs the kernel's own modules (drm and its helpers) to resolve the driver's in-tree dependencies: use a BASE_IMAGE of the nodes' distribution release that ships ${package}, or name the packages holding /lib/modules/${KERNEL_FULL_VERSION}/kernel in KERNEL_MODULES_PACKAGES" >&2; \
      fi; \
    done; \
    if [ "$missing" = 1 ]; then exit 1; fi; \
    for py in python3 python3.11; do "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null && break; done; \
    apt-get install -y -qq --no-install-recommends \
      "$headers" gcc make flex bison bc libelf-dev xz-utils zstd ca-certificates "$py-venv" >/dev/null; \
    mkdir -p /usr/src/kernel-modules/debs; \
    cd /usr/src/kernel-modules/debs; \
    apt-get download -qq $modules; \
    for deb in ./*.deb; do dpkg-deb -x "$deb" /usr/src/kernel-modules/root; done; \
    cd /; \
    rm -rf /usr/src/kernel-modules/debs /var/lib/apt/lists/*; \
    test -d "/lib/modules/${KERNEL_FULL_VERSION}/build"; \
    kernel_tree=""; \
    for tree in "/usr/src/kernel-modules/root/lib/modules/${KERNEL_FULL_VERSION}" "/usr/src/kernel-modules/root/usr/lib/modules/${KERNEL_FULL_VERSION}"; do \
      if [ -d "$tree/kernel" ]; then kernel_tree="$tree"; break; fi; \
    done; \
    if [ -z "$kernel_tree" ]; then \
      echo "error: the packages ${modules} hold no lib/modules/${KERNEL_FULL_VERSION}/kernel: name the packages with the kernel's modules in KERNEL_MODULES_PACKAGES" >&2; \
      exit 1; \
    fi; \
    ln -s "$kernel_tree" /usr/src/kernel-modules/tree; \
    if [ -f "$CA_BUNDLE" ]; then \
      cp "$CA_BUNDLE" /usr/local/share/ca-certificates/build-ca-bundle.crt; \
      update-ca-certificates >/dev/null; \
    fi; \
    "$py" -m venv /usr/local/lib/intel-gpu-agent

# The build context: the repository (.dockerignore keeps it to the agent, recipes and the test
# driver), or only this Dockerfile in KMM's build.
COPY . /src
ARG AGENT_SOURCE=""
ARG AGENT_SOURCE_SHA256=""
RUN set -eu; \
    export http_proxy="${HTTP_PROXY:-}" https_proxy="${HTTPS_PROXY:-}" no_proxy="${NO_PROXY:-}"; \
    venv=/usr/local/lib/intel-gpu-agent; \
    if [ ! -f /src/pyproject.toml ]; then \
      if [ -z "$AGENT_SOURCE" ] || [ -z "$AGENT_SOURCE_SHA256" ]; then \
        echo "error: the build context has no agent (KMM builds from this Dockerfile alone): set build args AGENT_SOURCE (a source archive URL of intel-gpu-driver-agent) and AGENT_SOURCE_SHA256" >&2; \
        exit 2; \
      fi; \
      "$venv/bin/python" -c 'import os, shutil, ssl, sys, urllib.request as u; c = ssl.create_default_context(); os.path.isfile(sys.argv[2]) and c.load_verify_locations(sys.argv[2]); shutil.copyfileobj(u.urlopen(sys.argv[1], context=c, timeout=60), open("/tmp/agent.tar.gz", "wb"))' "$AGENT_SOURCE" "$CA_BUNDLE"; \
      echo "$AGENT_SOURCE_SHA256  /tmp/agent.tar.gz" | sha256sum -c -; \
      tar -xzf /tmp/agent.tar.gz -C /src --strip-components=1; \
      rm /tmp/agent.tar.gz; \
    fi; \
    "$venv/bin/pip" install --no-cache-dir --disable-pip-version-check -q --require-hashes --no-deps \
      -r /src/scripts/deps/pip-agent.lock; \
    "$venv/bin/pip" install --no-cache-dir --disable-pip-version-check -q --no-deps --no-build-isolation /src; \
    "$venv/bin/pip" uninstall -y -q pip setuptools; \
    mkdir -p /usr/share/intel-gpu-driver-agent; \
    cp -R /src/build/releases /usr/share/intel-gpu-driver-agent/releases; \
    cp -R /src/build/fixes /usr/share/intel-gpu-driver-agent/fixes; \
    ln -s "$venv/bin/intel-gpu-agent" /usr/local/bin/intel-gpu-agent; \
    intel-gpu-agent --version

ARG RECIPE=i915-2350.145
ARG DRIVER_SOURCE=""
ARG DRIVER_SOURCE_SHA256=""
ARG DRIVER_FIRMWARE=""
ARG DRIVER_FIRMWARE_SHA256=""
WORKDIR /src
# The agent picks -j from the CPUs available, fetches and checks every input by sha256 over TLS
# (trusting CA_BUNDLE too), and runs depmod -b /out/opt for KERNEL_FULL_VERSION (never the build
# machine's kernel) over the driver's own modules. The second depmod sees the kernel's modules too,
# through the `host` link, so modules.dep names the in-tree dependencies by the path the node will
# have (host/kernel/...); the link then points where KMM's worker and the agent's pod mount the
# node's /lib/modules. A driver module whose symbols nothing resolves fails the build here, not on
# the node.
RUN set -eu; \
    export http_proxy="${HTTP_PROXY:-}" https_proxy="${HTTPS_PROXY:-}" no_proxy="${NO_PROXY:-}"; \
    set --; \
    if [ -f "$CA_BUNDLE" ]; then set -- --ca-bundle "$CA_BUNDLE"; fi; \
    if [ -n "$DRIVER_SOURCE" ]; then set -- "$@" --source "$DRIVER_SOURCE"; fi; \
    if [ -n "$DRIVER_SOURCE_SHA256" ]; then set -- "$@" --source-sha256 "$DRIVER_SOURCE_SHA256"; fi; \
    if [ -n "$DRIVER_FIRMWARE" ]; then set -- "$@" --firmware "$DRIVER_FIRMWARE"; fi; \
    if [ -n "$DRIVER_FIRMWARE_SHA256" ]; then set -- "$@" --firmware-sha256 "$DRIVER_FIRMWARE_SHA256"; fi; \
    intel-gpu-agent build --recipe "$RECIPE" --kernel "$KERNEL_FULL_VERSION" --out /out "$@"; \
    moddir="/out/opt/lib/modules/${KERNEL_FULL_VERSION}"; \
    test -f "$moddir/modules.dep"; \
    test -f /out/manifest.json; \
    kernel_tree=/usr/src/kernel-modules/tree; \
    for f in modules.builtin modules.builtin.modinfo; do \
      if [ -f "$kernel_tree/$f" ]; then cp "$kernel_tree/$f" "$moddir/$f"; fi; \
    done; \
    if [ -f "$kernel_tree/modules.order" ]; then sed 's|^|host/|' "$kernel_tree/modules.order" > "$moddir/modules.order"; fi; \
    ln -s "$kernel_tree" "$moddir/host"; \
    depmod -b /out/opt -e -E "/lib/modules/${KERNEL_FULL_VERSION}/build/Module.symvers" "$KERNEL_FULL_VERSION" 2> /tmp/depmod.log || { cat /tmp/depmod.log >&2; exit 1; }; \
    if grep "/updates/" /tmp/depmod.log > /tmp/depmod.unresolved; then \
      echo "error: the driver's modules need symbols that neither the driver nor the modules of kernel ${KERNEL_FULL_VERSION} provide:" >&2; \
      cat /tmp/depmod.unresolved >&2; \
      exit 1; \
    fi; \
    rm "$moddir/host" /tmp/depmod.log /tmp/depmod.unresolved; \
    ln -s "/host/lib/modules/${KERNEL_FULL_VERSION}" "$moddir/host"

# --- the driver image --------------------------------------------------------------------------
FROM runtime
SHELL ["/bin/bash", "-euo", "pipefail", "-c"]
ARG KERNEL_FULL_VERSION
ARG KERNEL_VERSION=""
ARG MOD_NAME=""
ARG MOD_NAMESPACE=""
ARG RECIPE=i915-2350.145
ARG VERSION=0.1.0
ARG SOURCE_URL=""
COPY --from=build /usr/local/lib/intel-gpu-agent /usr/local/lib/intel-gpu-agent
COPY --from=build /usr/share/intel-gpu-driver-agent /usr/share/intel-gpu-driver-agent
COPY --from=build /out/ /
RUN ln -s /usr/local/lib/intel-gpu-agent/bin/intel-gpu-agent /usr/local/bin/intel-gpu-agent
ENV INTEL_GPU_AGENT_DRIVER_TREE=/
LABEL org.opencontainers.image.title="intel-gpu-driver" \
      org.opencontainers.image.description="Intel i915 backport driver for kernel ${KERNEL_FULL_VERSION} (KMM layout) with its node agent" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="${SOURCE_URL}" \
      org.opencontainers.image.licenses="Apache-2.0 AND GPL-2.0-only AND LicenseRef-Intel-GPU-Firmware" \
      intel-gpu-driver.kernel="${KERNEL_FULL_VERSION}" \
      intel-gpu-driver.recipe="${RECIPE}" \
      intel-gpu-driver.kmm-module="${MOD_NAMESPACE}/${MOD_NAME}"
ENTRYPOINT ["intel-gpu-agent"]
CMD ["run"]
