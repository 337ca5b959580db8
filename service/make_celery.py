"""Entry point for `celery -A service.make_celery worker|beat|flower`."""

from . import create_app

flask_app = create_app()
celery_app = flask_app.extensions["celery"]
