# remixbot: one image for the bot (`remixbot run`) and the workers (`remixbot worker`).
#   docker build -t remixbot .              # torch from PyPI: CUDA built in (NVIDIA GPUs), also runs on CPU
#   docker build --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cpu -t remixbot:cpu .  # smaller
# docker-compose.yml builds and runs it; see the comments there.
FROM python:3.11-slim

# Extras to install (pyproject.toml): the engine (torch, diffusers), both chat adapters, metrics.
ARG EXTRAS="engine,models,discord,telegram,metrics"
# An extra index for torch wheels: none (PyPI's CUDA build), or PyTorch's CPU index for a smaller image.
ARG TORCH_INDEX=""

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    REMIXBOT_DATA_DIR=/data \
    HF_HOME=/models

# OpenCV (headless) needs glib (imageio-ffmpeg brings its own ffmpeg).
RUN apt-get update \
    && apt-get install -y --no-install-recommends libglib2.0-0 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY . /app
# Editable, so config/models.toml is found where bot/settings.py looks for it (/app/config).
RUN pip install ${TORCH_INDEX:+--extra-index-url "$TORCH_INDEX"} -c config/constraints.txt -e ".[${EXTRAS}]" \
    && useradd --create-home --uid 1000 remixbot \
    && mkdir -p /data /models \
    && chown remixbot:remixbot /data /models

USER remixbot
# /data: the SQLite history and every input/output file (the bot). /models: downloaded weights (workers).
VOLUME ["/data", "/models"]
ENTRYPOINT ["remixbot"]
CMD ["run"]
