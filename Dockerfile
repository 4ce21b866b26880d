# dify-volume-init: a multi-stage build onto a distroless Python runtime.
#
# The builder is Debian 12 with its own Python 3.11, the same interpreter the
# distroless python3-debian12 image runs, so the virtual environment built
# here (compiled wheels included) runs there unchanged: its `python` is a
# symlink to /usr/bin/python3, present in both. The runtime has no shell and
# no package manager, and runs as the numeric non-root user 65532.
#
# Both base images are pinned by digest (the tag is kept for reading);
# refresh the digests on upgrade with
# `docker buildx imagetools inspect <image>`.
ARG BUILD_IMAGE=debian:12.8-slim@sha256:d365f4920711a9074c4bcd178e8f457ee59250426441ab2a5f8106ed8fe948eb
ARG RUNTIME_IMAGE=gcr.io/distroless/python3-debian12:nonroot@sha256:66f3e24fd4906156a7360d2861731d31d3457a02f34fd3c4491f0b710a259988

FROM ${BUILD_IMAGE} AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 python3-venv \
 && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /venv
WORKDIR /src
COPY pyproject.toml README.md ./
COPY webhook ./webhook
# NB: pip and setuptools are not needed at run time (a quarter of the layer).
RUN /venv/bin/pip install --no-cache-dir --no-compile . \
 && /venv/bin/python -m pip uninstall -q -y pip setuptools \
 && /venv/bin/python -m compileall -q /venv/lib

FROM ${RUNTIME_IMAGE}
COPY --from=build /venv /venv
# NB: the injected init container runs `dify-volume-init fix-ownership` from this
# image by name (its own command, as root with CHOWN and DAC_OVERRIDE only), so the
# console script is on PATH.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
USER 65532:65532
EXPOSE 8443
ENTRYPOINT ["/venv/bin/dify-volume-init"]
CMD ["serve"]
