# syntax=docker/dockerfile:1
# SEATER retrieval service, CPU image: FastAPI + ONNX Runtime + Redis client. No torch.
#   docker build -t seater-retrieval .
#   docker run -p 8000:8000 -v $PWD/artifacts:/artifacts:ro seater-retrieval
# The bundle directory served is $SEATER_ARTIFACTS (default /artifacts/current).

ARG PYTHON_VERSION=3.11

# ---- builder: install the [serve] extra into a self-contained venv -----------------------
FROM python:${PYTHON_VERSION}-slim AS builder
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml ./
# pyproject names README.md as the long description; the image does not need its text.
RUN touch README.md
COPY indexer ./indexer
COPY service ./service
RUN pip install ".[serve]" \
    && python -c "import service.app, service.model.load" \
    && ! python -c "import torch" 2>/dev/null

# ---- runtime: the venv only, as a non-root user ----------------------------------------------
FROM python:${PYTHON_VERSION}-slim AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    SEATER_HOST=0.0.0.0 \
    SEATER_PORT=8000 \
    SEATER_ARTIFACTS=/artifacts/current \
    SEATER_RELOAD_ROOT=/artifacts
RUN groupadd --system --gid 10001 seater \
    && useradd --system --uid 10001 --gid seater --no-create-home --shell /usr/sbin/nologin seater \
    && mkdir -p /artifacts && chown seater:seater /artifacts
COPY --from=builder /opt/venv /opt/venv
USER 10001:10001
WORKDIR /app
VOLUME ["/artifacts"]
EXPOSE 8000
# No curl in slim images: probe liveness with the standard library.
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ.get('SEATER_PORT', '8000')}/v2/health/live\", timeout=2)"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["python", "-m", "service"]
