# The project's own services (store writer, Celery workers, and later the loop's workers and API).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app

# Dependencies first, so that code changes do not reinstall torch.
COPY pyproject.toml README.md ./
RUN mkdir -p schemas services workers loop \
    && touch schemas/__init__.py services/__init__.py workers/__init__.py loop/__init__.py \
    && pip install --no-cache-dir . \
    && rm -rf schemas services workers loop build

COPY schemas ./schemas
COPY services ./services
COPY workers ./workers
COPY loop ./loop
RUN pip install --no-cache-dir --no-deps .

RUN useradd --create-home --uid 1000 loop && mkdir -p /data && chown loop /data
USER loop
ENV LOOP_DATA_DIR=/data
VOLUME ["/data"]
