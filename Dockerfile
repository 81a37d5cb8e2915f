# The image compose.yaml runs for the bot and the workers: `dreambot <command>`.
# PyPI's torch wheels for Linux carry their own CUDA libraries; the host needs only the NVIDIA driver and the
# container toolkit for the workers' GPUs.
FROM python:3.11-slim
RUN apt-get update -q && apt-get install -y -q --no-install-recommends libgl1 libglib2.0-0 \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md config.toml ./
COPY bot bot
COPY cli cli
COPY storage storage
COPY trainer trainer
RUN pip install --no-cache-dir .
RUN useradd --create-home dreambot && mkdir -p /scratch /models && chown dreambot /scratch /models
USER dreambot
ENV DREAMBOT_CONFIG=/app/config.toml
ENTRYPOINT ["dreambot"]
