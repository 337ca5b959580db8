"""Entry point for gunicorn (`service.wsgi:app`) and `flask --app service.wsgi`."""

from . import create_app

app = create_app()
