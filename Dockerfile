# The project's services: one image, each compose service runs one of its modules.
#   docker compose build                                  # from python:3.11-slim and PyPI
#   docker build --build-arg BASE=<image with python3 and python3-venv> .
# Wheels in ./wheelhouse (scripts/wheelhouse.sh puts them there) are installed without asking an index; torch alone
# is several GB, so a build that has them offline does not download it again. They stay in the build stage.
ARG BASE=python:3.11-slim

FROM ${BASE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python3 -m venv /opt/venv
WORKDIR /src
COPY wheelhouse /wheels
# Dependencies first, so that a change of code does not reinstall torch.
COPY pyproject.toml README.md ./
RUN mkdir -p schemas tasks services workers loop \
    && touch schemas/__init__.py tasks/__init__.py services/__init__.py workers/__init__.py loop/__init__.py \
    && if ls /wheels/*.whl >/dev/null 2>&1; then set -- --no-index --find-links /wheels; fi \
    && /opt/venv/bin/pip install "$@" . \
    && /opt/venv/bin/pip uninstall --yes selfloop \
    && rm -rf schemas tasks services workers loop build
COPY schemas ./schemas
COPY tasks ./tasks
COPY services ./services
COPY workers ./workers
COPY loop ./loop
RUN if ls /wheels/*.whl >/dev/null 2>&1; then set -- --no-index --find-links /wheels; fi \
    && /opt/venv/bin/pip install --no-deps "$@" .

FROM ${BASE}
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PATH=/opt/venv/bin:$PATH LOOP_DATA_DIR=/data
COPY --from=build /opt/venv /opt/venv
RUN useradd --create-home --uid 1000 loop && mkdir -p /data && chown loop /data
USER loop
WORKDIR /home/loop

