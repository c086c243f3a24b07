# The CDS Hooks service image: python:3.11-slim, non-root (uid 10001), no compiler or build backend
# in the final image, and fit for a read-only root filesystem (bytecode compiled at install time).
#
#   docker build -t cds-service .
#   docker run --rm -p 8080:8080 -e CDS_AUTH_MODE=disabled cds-service
#
# Stages:
#   deps     the third-party dependencies, read from pyproject.toml [project.dependencies], in a
#            virtualenv at /opt/venv; only a change of pyproject.toml rebuilds this layer.
#   build    the project itself as a wheel (hatchling runs in pip's throw-away build environment).
#   runtime  the deps venv copied in one layer, then the project wheel installed with --no-deps.
#
# Settings come from the environment (CDS_*; see docs/deploy.md). CDS_WORKERS is the number of
# uvicorn worker processes: 1 by default, because with the default SQLite file and migration at
# start-up several workers would each migrate the same new file at once; deploy/k8s sets 2 (PostgreSQL,
# migrated by a Job before the rollout).

ARG PYTHON_IMAGE=python:3.11-slim

# ---------------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS deps
# Optional-dependency groups of pyproject.toml to install as well (space- or comma-separated names,
# e.g. --build-arg CDS_EXTRAS=test); an unknown name fails the build. (Redis needs no extra: its client is a dependency.)
ARG CDS_EXTRAS=""
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml ./
# A venv without pip or setuptools of its own: the base image's pip installs into it (--python).
RUN python -m venv --without-pip /opt/venv \
 && python -c "import os, tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
extras = os.environ.get('CDS_EXTRAS', '').replace(',', ' ').split(); \
print('\n'.join(p['dependencies'] + [d for e in extras for d in p['optional-dependencies'][e]]))" \
      > requirements.txt \
 && python -m pip --python /opt/venv/bin/python install --no-cache-dir -r requirements.txt

# ---------------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY cds_service ./cds_service
COPY cards ./cards
RUN python -m pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

# ---------------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="cds-service" \
      org.opencontainers.image.description="CDS Hooks 2.0 service: multiple sclerosis with back pain"
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PATH=/opt/venv/bin:$PATH \
    CDS_WORKERS=1 \
    CDS_DATABASE_URL=sqlite+aiosqlite:////var/lib/cds-service/cds-service.db

# The service user, and the only directory it may write to (the SQLite file of a single-container
# run; in Kubernetes CDS_DATABASE_URL points at PostgreSQL and the root filesystem is read-only).
RUN useradd --system --uid 10001 --user-group --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin cds \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/cds-service

COPY --from=deps /opt/venv /opt/venv
# (A plain COPY rather than RUN --mount: docker-compose 1.x builds without BuildKit.)
COPY --from=build /wheels /tmp/wheels
RUN python -m pip --python /opt/venv/bin/python install --no-cache-dir --no-deps /tmp/wheels/cds_service-*.whl \
 && rm -rf /tmp/wheels

# The synthetic fixture patients: docker-compose.yml's load-fixtures service runs
# `python fixtures/load_into_fhir.py` from this directory.
WORKDIR /app
COPY fixtures ./fixtures

USER 10001:10001
EXPOSE 8080
# Shell form only to expand CDS_WORKERS; `exec` makes the server PID 1 so it receives SIGTERM itself.
CMD ["/bin/sh", "-c", "exec cds-service serve --host 0.0.0.0 --port 8080 --workers \"${CDS_WORKERS:-1}\""]
