# One image for every role (web, worker, beat, flower, migrations); the command picks the role.
# Build: podman build -t flask-celery:0.1.0 .   (or docker build)
# Without registry access: bash scripts/build-base-image.sh, then
#        podman build --network host --build-arg BASE=localhost/bookworm-python:latest ...
# Layers: the dependencies are keyed on the requirements that pyproject.toml lists, the service
# on its code, so a code change rebuilds only the small last layer; the final image is the
# dependencies' stage itself, so a cached build copies nothing large.
ARG BASE=python:3.11-slim-bookworm

FROM ${BASE} AS requirements
COPY pyproject.toml /src/
RUN python -c "import tomllib; p = tomllib.load(open('/src/pyproject.toml', 'rb'))['project']; \
print('\n'.join(p['dependencies'] + p['optional-dependencies']['postgres']))" > /requirements.txt

FROM ${BASE} AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    FLASK_STORAGE_DIR=/data/storage \
    FLASK_LOG_FORMAT=json \
    FLASK_APP=service.wsgi \
    PROMETHEUS_MULTIPROC_DIR=/var/run/prometheus
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home app \
    && mkdir -p /data/storage /var/run/prometheus \
    && chown -R 10001:10001 /data /var/run/prometheus
COPY --from=requirements /requirements.txt /opt/requirements.txt
# Behind a TLS-intercepting proxy, pass its CA bundle: --secret id=ca,src=/path/to/ca.pem
# The service itself goes to /opt/app (the .pth file puts it on the venv's path).
RUN --mount=type=secret,id=ca,required=false \
    if [ -f /run/secrets/ca ]; then export PIP_CERT=/run/secrets/ca; fi; \
    python -m venv /opt/venv \
    && /opt/venv/bin/pip install -r /opt/requirements.txt "setuptools>=69" \
    && echo /opt/app > "$(/opt/venv/bin/python -c 'import site; print(site.getsitepackages()[0])')/flask-celery-app.pth"

FROM runtime AS app
COPY pyproject.toml README.md /src/
COPY service /src/service
RUN pip install --no-deps --no-build-isolation --target /opt/app /src

FROM runtime
COPY --from=app /opt/app /opt/app
# Numeric so that runAsNonRoot can verify it without reading /etc/passwd.
USER 10001:10001
WORKDIR /data
EXPOSE 8000 9808 5555
CMD ["gunicorn", "--bind", "0.0.0.0:8000", "--workers", "2", "--access-logfile", "-", "service.wsgi:app"]
