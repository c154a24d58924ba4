# syntax=docker/dockerfile:1
# One image for every service of the platform; the command picks the service (see
# docker-compose.yml and helm/ingestion-platform). Build: docker build -t ingestion-platform .

ARG PYTHON_IMAGE=python:3.11-slim

# ---------------------------------------------------------------- build: dependencies from uv.lock
FROM ${PYTHON_IMAGE} AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=/usr/local/bin/python3 \
    UV_PROJECT_ENVIRONMENT=/app/.venv

RUN pip install "uv==0.13.9"

WORKDIR /app
# Only the lock and the project file: the dependency layer is rebuilt when they change, not the code.
COPY pyproject.toml uv.lock ./
RUN uv sync --frozen --no-dev --no-install-project

# ---------------------------------------------------------------- runtime: no compilers, no uv
FROM ${PYTHON_IMAGE} AS runtime

ENV PATH=/app/.venv/bin:$PATH \
    VIRTUAL_ENV=/app/.venv \
    PYTHONPATH=/app \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DATA_ROOT=/data \
    PORT=8080

RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid 10001 --home-dir /home/app --create-home \
       --shell /usr/sbin/nologin app \
    && mkdir -p /data \
    && chown 10001:10001 /data

WORKDIR /app
COPY --from=build /app/.venv /app/.venv
# The whole context minus what .dockerignore leaves out: shared/ services/ agents/ workflows/
# ml/ (when present) and whatever else the services read at run time.
COPY . /app
# Bytecode is compiled now, as root, because the root filesystem is read-only at run time.
RUN python -m compileall -q -x '/app/\.venv/' /app

USER 10001:10001

# controller 8080, engine 8000, agents 8101-8108
EXPOSE 8000 8080 8101 8102 8103 8104 8105 8106 8107 8108

HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('PORT', '8080'), timeout=4)"]

CMD ["uvicorn", "services.orchestrator_controller.app:create_app", "--factory", "--host", "0.0.0.0", "--port", "8080"]
