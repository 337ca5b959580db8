"""Chart tests: render charts/flask-celery with the real helm, validate it, and run it locally."""
