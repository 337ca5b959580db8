"""Input that used to hurt downstream, sent to the running stack: gunicorn, workers, SQLite.

Concurrent creates of one email, Unicode text in an invoice PDF, and formulas in a CSV export,
each checked where it lands: the answers, the rows, the rendered PDF, the downloaded file.
"""

from __future__ import annotations

import csv
import io
import threading
from collections import Counter
from typing import Any
from uuid import uuid4

import httpx
import sqlalchemy as sa
from pypdf import PdfReader

from harness.auth import bearer
from service.data.db import db
from service.data.models import User
from tests.support.api import new_user, wait_for_job

#: Requests sent at once for one email; gunicorn's two workers take them two by two.
THREADS = 8
ROUNDS = 4


def create_at_once(web: str, emails: list[str]) -> list[int]:
    """POST /users once per email, all released together by a barrier; the status codes."""
    barrier = threading.Barrier(len(emails))
    statuses: list[int] = []

    def create(email: str) -> None:
        with httpx.Client(base_url=web, headers=bearer(), timeout=30) as client:
            barrier.wait()
            response = client.post("/users", json={"email": email, "name": "Racer"})
            statuses.append(response.status_code)

    threads = [threading.Thread(target=create, args=(email,)) for email in emails]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return statuses


def test_concurrent_creates_of_one_email_in_any_case_make_one_user_and_409s(
    web: str, stack_app: Any
) -> None:
    for _ in range(ROUNDS):
        email = f"race-{uuid4().hex[:12]}@example.com"
        # the same address, each request in a case of its own
        variants = [
            "".join(c.upper() if (n >> i) & 1 else c for i, c in enumerate(email))
            for n in range(THREADS)
        ]
        statuses = create_at_once(web, variants)
        assert Counter(statuses) == {201: 1, 409: THREADS - 1}
        with stack_app.app_context():
            stored = db.session.scalars(sa.select(User.email).where(User.email.ilike(email)))
            assert list(stored) == [email]


def test_an_invoice_in_polish_greek_and_cyrillic_renders_and_emoji_do_not_fail_it(
    api: httpx.Client,
) -> None:
    user = new_user(api, name="Łukasz Żółć")
    invoice = api.post(
        "/invoices",
        json={
            "user_id": user["id"],
            "currency": "EUR",
            "lines": [
                {
                    "description": "Συμβουλευτικές υπηρεσίες",
                    "quantity": 3,
                    "unit_price_cents": 12000,
                },
                {"description": "Перевод документов", "quantity": 1, "unit_price_cents": 4550},
                {"description": "Sushi 🍣 寿司", "quantity": 1, "unit_price_cents": 1},
            ],
        },
    ).json()
    job = api.post("/jobs/invoice-pdf", json={"invoice_id": invoice["id"]}).json()
    assert wait_for_job(api, job["status_url"])["state"] == "success"

    pdf = api.get(f"/invoices/{invoice['id']}/pdf")
    assert pdf.status_code == 200
    text = "".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf.content)).pages)
    assert "Łukasz Żółć" in text
    assert "Συμβουλευτικές υπηρεσίες" in text and "Перевод документов" in text
    assert "Sushi ? ??" in text
    assert "405.51 EUR" in text


def test_an_exported_name_that_starts_a_formula_is_text_in_the_csv(api: httpx.Client) -> None:
    formulas = {
        new_user(api, name=name)["email"]: name
        for name in ('=HYPERLINK("http://evil.example","x")', "+1+1", "-2+3", "@SUM(A1:A2)")
    }
    job = api.post("/jobs/export", json={"table": "users"}).json()
    export_id = wait_for_job(api, job["status_url"])["value"]["export_id"]
    download = api.get(f"/exports/{export_id}/download")
    rows = {row["email"]: row for row in csv.DictReader(io.StringIO(download.text, newline=""))}
    for email, name in formulas.items():
        assert rows[email]["name"] == "'" + name
