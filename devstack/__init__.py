"""The local stack behind `make run`, and its stand-ins for the outside world (SMTP, webhooks).

Development only: it runs from the checkout (`python -m devstack` at the repository root), is
not part of the installed distribution and is never copied into the image; the sinks need
aiosmtpd, from the repository's `dev` extra.
"""
