# GPU worker / dashboard image. Build: docker compose build
FROM pytorch/pytorch:2.4.1-cuda12.1-cudnn9-runtime
WORKDIR /app
COPY pyproject.toml README.md ./
COPY search search
COPY training training
COPY studies studies
RUN pip install --no-cache-dir .
ENTRYPOINT []
