# syntax=docker/dockerfile:1
# grasp-relay image: a Nostr relay and git smart HTTP server on one port.
#
#   docker build -t grasp-relay .
#   docker run -p 8080:8080 -v grasp-data:/data -e GRASP_DOMAIN=git.example.org grasp-relay
#
# The builder stage turns the source tree into a virtualenv; the final stage only copies that
# venv, so nothing is downloaded when the container starts.

ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
# The venv lives at the same path in both stages (and on bare-metal installs, see
# deploy/grasp-relay.service) because a venv's scripts hard-code their interpreter path.
RUN python -m venv /opt/grasp-relay/venv
WORKDIR /src
COPY . /src
RUN /opt/grasp-relay/venv/bin/pip install --upgrade pip wheel \
 && /opt/grasp-relay/venv/bin/pip wheel --no-deps --wheel-dir /wheels /src \
 && /opt/grasp-relay/venv/bin/pip install /wheels/*.whl \
 && cd / && /opt/grasp-relay/venv/bin/python -c "import config, storage, purgatory, relay"

FROM ${PYTHON_IMAGE}
# git: the daemon runs `git upload-pack` / `git receive-pack` as subprocesses.
# tini: reaps grandchildren that git leaves behind when a client disconnects mid-transfer.
# ca-certificates: fetching from other GRASP servers over https.
RUN apt-get update \
 && apt-get install -y --no-install-recommends git tini ca-certificates \
 && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 grasp \
 && useradd --system --uid 10001 --gid grasp --home-dir /data --shell /usr/sbin/nologin grasp \
 && mkdir -p /data \
 && chown grasp:grasp /data
COPY --from=builder /opt/grasp-relay/venv /opt/grasp-relay/venv

ENV PATH=/opt/grasp-relay/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/data
ENV GRASP_BIND=0.0.0.0:8080 GRASP_DATA_DIR=/data GRASP_LOG_FORMAT=json

# Not /data: Settings also reads a `.env` from the working directory, and the data volume
# is no place for configuration.
WORKDIR /opt/grasp-relay
USER grasp
VOLUME /data
EXPOSE 8080

# slim has no curl; python's urllib is enough. The port follows GRASP_BIND if it is overridden.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import os,sys,urllib.request; port=os.environ.get('GRASP_BIND','0.0.0.0:8080').rpartition(':')[2]; r=urllib.request.urlopen('http://127.0.0.1:%s/health' % port, timeout=4); sys.exit(0 if r.status == 200 else 1)"]

STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["grasp-relay"]
