# One image for every role (web, worker, beat, flower, migrations); the command picks the role.
# Build: podman build -t flask-celery:0.1.0 .   (or docker build)
ARG BASE=python:3.11-slim-bookworm

FROM ${BASE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/venv
COPY pyproject.toml README.md /src/
COPY service /src/service
# Behind a TLS-intercepting proxy, pass its CA bundle: --secret id=ca,src=/path/to/ca.pem
RUN --mount=type=secret,id=ca,required=false \
    if [ -f /run/secrets/ca ]; then export PIP_CERT=/run/secrets/ca; fi; \
    /opt/venv/bin/pip install "/src[postgres]"

FROM ${BASE}
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    FLASK_STORAGE_DIR=/data/storage \
    FLASK_LOG_FORMAT=json \
    FLASK_APP=service.wsgi \
    PROMETHEUS_MULTIPROC_DIR=/var/run/prometheus
COPY --from=build /opt/venv /opt/venv
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home app \
    && mkdir -p /data/storage /var/run/prometheus \
    && chown -R 10001:10001 /data /var/run/prometheus
# Numeric so that runAsNonRoot can verify it without reading /etc/passwd.
USER 10001:10001
WORKDIR /data
EXPOSE 8000 9808 5555
CMD ["gunicorn", "--bind", "0.0.0.0:8000", "--workers", "2", "--access-logfile", "-", "service.wsgi:app"]
