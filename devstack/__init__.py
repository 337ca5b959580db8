"""The local stack behind `make run`, and its stand-ins for the outside world (SMTP, webhooks).

Development only: installed with the repository's `dev` extra, never copied into the image.
"""
