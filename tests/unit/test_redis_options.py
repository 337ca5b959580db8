"""Redis credentials and TLS, built in one place: escaped credentials, verification that no
setting can turn off, and the database a URL selects."""

from __future__ import annotations

import ssl

import pytest
import redis

from service.config import ConfigError
from service.redis_options import RedisAccess, client, database_index, verifying

ACCESS = RedisAccess("flask-app", "p@ss:/#%w0rd", "/ca.pem")


def test_credentials_are_escaped_into_urls_that_carry_none():
    url = ACCESS.url("rediss://redis.internal:6380/3", "X")
    assert url == "rediss://flask-app:p%40ss%3A%2F%23%25w0rd@redis.internal:6380/3"
    parsed = redis.connection.parse_url(url)
    assert (parsed["username"], parsed["password"], parsed["db"]) == (
        "flask-app",
        "p@ss:/#%w0rd",
        3,
    )
    # the same credentials written in the URL are no conflict
    assert ACCESS.url(url, "X") == url


def test_every_rediss_setting_verifies_against_the_ca():
    settings = ACCESS.secure(
        {"broker_url": "rediss://h/0", "result_backend": "rediss://h/1",
         "redbeat_redis_url": "rediss://h/0"}
    )  # fmt: skip
    for name in ("broker_use_ssl", "redis_backend_use_ssl", "redbeat_redis_use_ssl"):
        assert settings[name] == {
            "ssl_cert_reqs": ssl.CERT_REQUIRED,
            "ssl_check_hostname": True,
            "ssl_ca_certs": "/ca.pem",
        }


def test_a_client_of_a_rediss_url_verifies_even_without_options():
    kwargs = client("rediss://h:6380/0").connection_pool.connection_kwargs
    assert kwargs["ssl_cert_reqs"] == ssl.CERT_REQUIRED and kwargs["ssl_check_hostname"] is True


@pytest.mark.parametrize(
    ("access", "settings", "message"),
    [
        (ACCESS, {"broker_url": "redis://h/0"},
         "FLASK_CELERY__BROKER_URL is a plain redis:// URL but FLASK_REDIS_CA_FILE is set"),
        (RedisAccess(require_tls=True), {"result_backend": "redis://h/1"},
         "FLASK_CELERY__RESULT_BACKEND is a plain redis:// URL but FLASK_REDIS_REQUIRE_TLS is on"),
        (RedisAccess(), {"broker_url": "rediss://h/0?ssl_cert_reqs=none"},
         "FLASK_CELERY__BROKER_URL sets ssl_cert_reqs in its query"),
        (RedisAccess(), {"broker_url": "rediss://h/0?ssl_check_hostname=false"},
         "FLASK_CELERY__BROKER_URL sets ssl_check_hostname in its query"),
        (ACCESS, {"broker_url": "rediss://other:pw@h/0"},
         "FLASK_CELERY__BROKER_URL carries Redis credentials other than FLASK_REDIS_USERNAME"),
        (RedisAccess(), {"broker_url": "rediss://h/0",
                         "broker_use_ssl": {"ssl_cert_reqs": ssl.CERT_NONE}},
         "FLASK_CELERY__BROKER_USE_SSL turns off verification"),
        (RedisAccess(), {"redbeat_redis_options": {"ssl_check_hostname": False}},
         "FLASK_CELERY__REDBEAT_REDIS_OPTIONS turns off verification"),
    ],
)  # fmt: skip
def test_what_would_not_verify_is_refused(access, settings, message):
    with pytest.raises(ConfigError, match=message):
        access.secure(settings)


def test_a_required_cert_in_the_url_is_accepted_and_left_to_the_options():
    # kombu would let TLS options in the URL replace broker_use_ssl, CA file and all
    settings = ACCESS.secure({"broker_url": "rediss://h/0?ssl_cert_reqs=required"})
    assert settings["broker_url"] == "rediss://flask-app:p%40ss%3A%2F%23%25w0rd@h/0"
    assert settings["broker_use_ssl"]["ssl_ca_certs"] == "/ca.pem"


def test_a_plain_url_without_a_ca_stays_plain():
    assert RedisAccess().secure({"broker_url": "redis://h/0"}) == {"broker_url": "redis://h/0"}
    assert verifying() == {"ssl_cert_reqs": ssl.CERT_REQUIRED, "ssl_check_hostname": True}


@pytest.mark.parametrize(
    ("url", "index"),
    [("redis://h:6379/2", 2), ("rediss://u:p@h/0", 0), ("redis://h:6379", 0),
     ("redis://h/", 0), ("amqp://h//", None)],
)  # fmt: skip
def test_database_index_is_the_one_kombu_selects(url, index):
    assert database_index(url) == index
