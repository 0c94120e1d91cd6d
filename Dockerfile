# The project's services: one image, each compose service runs one of its modules.
#   docker compose build                                  # from python:3.11-slim and PyPI
#   docker build --build-arg BASE=<image with python3 and python3-venv> .
# Wheels in ./wheelhouse (scripts/wheelhouse.sh puts them there) are installed without asking an index; torch alone
# is several GB, so a build that has them offline does not download it again. They stay in the build stages.
# The dependencies (a venv of several GB) and the project's code (a few MB) are separate layers of the final image,
# so that a change of code rebuilds and ships only the code.
ARG BASE=python:3.11-slim

FROM ${BASE} AS deps
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python3 -m venv /opt/venv
WORKDIR /src
COPY wheelhouse /wheels
# Only what names the dependencies: the README and the packages are placeholders here.
COPY pyproject.toml ./
RUN mkdir -p schemas tasks services workers loop \
    && touch README.md schemas/__init__.py tasks/__init__.py services/__init__.py workers/__init__.py loop/__init__.py \
    && if ls /wheels/*.whl >/dev/null 2>&1; then set -- --no-index --find-links /wheels; fi \
    && /opt/venv/bin/pip install "$@" . \
    && /opt/venv/bin/pip uninstall --yes selfloop \
    && rm -rf README.md schemas tasks services workers loop build

FROM deps AS app
COPY README.md ./
COPY schemas ./schemas
COPY tasks ./tasks
COPY services ./services
COPY workers ./workers
COPY loop ./loop
# The project beside the venv, with its metadata (entry points) and the loopctl script.
RUN if ls /wheels/*.whl >/dev/null 2>&1; then set -- --no-index --find-links /wheels; fi \
    && /opt/venv/bin/pip install --no-deps --target /opt/app "$@" .

FROM ${BASE}
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PATH=/opt/app/bin:/opt/venv/bin:$PATH PYTHONPATH=/opt/app \
    LOOP_DATA_DIR=/data
RUN useradd --create-home --uid 1000 loop && mkdir -p /data && chown loop /data
COPY --from=deps /opt/venv /opt/venv
COPY --from=app /opt/app /opt/app
USER loop
WORKDIR /home/loop
