"""What users typed reaches the files tasks write harmlessly: CSV exports and invoice PDFs.

The tasks run eagerly in this process (their ledger, rows and result as on a worker), on rows
written straight to the database, as any earlier version of the API may have left them.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import flask_migrate
import pytest
from flask import Flask
from pypdf import PdfReader

from service import create_app
from service.data.db import db
from service.data.models import Export, Invoice, User
from service.tasks.exports import FORMULA_START
from service.tasks.invoices import FONT_FAMILY


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flask]:
    tmp_path = tmp_path_factory.mktemp("tasks")
    app = create_app(
        {
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'db.sqlite'}",
            "STORAGE_DIR": str(tmp_path / "storage"),
            "CELERY": {
                "task_always_eager": True,
                "broker_url": "memory://",
                "result_backend": "cache+memory://",
            },
        }
    )
    with app.app_context():
        flask_migrate.upgrade()
    yield app


def run(app: Flask, task: str, *args: Any) -> Any:
    """Run `task` as a worker would; its result, which must be a success."""
    result = app.extensions["celery"].tasks[task].apply(args)
    assert result.successful(), result.traceback
    return result.get()


def add(app: Flask, row: Any) -> int:
    with app.app_context():
        db.session.add(row)
        db.session.commit()
        return int(row.id)


def export_users(app: Flask) -> list[dict[str, str]]:
    export_id = add(app, Export(table_name="users"))
    run(app, "exports.export_table", export_id)
    with app.app_context():
        path = Path(db.session.get(Export, export_id).path)
    # bytes, not read_text(): universal newlines would turn a leading "\r" into "\n"
    return list(csv.DictReader(io.StringIO(path.read_bytes().decode(), newline="")))


def test_cells_a_spreadsheet_would_run_as_formulas_are_exported_as_text(app: Flask) -> None:
    names = {start: f'{start}HYPERLINK("http://evil.example","click")' for start in FORMULA_START}
    emails = {start: f"{start}cmd{n}@example.com" for n, start in enumerate("=+-")}
    for start, name in names.items():
        add(app, User(email=f"formula{ord(start)}@example.com", name=name))
    for email in emails.values():
        add(app, User(email=email, name="Formula Email"))
    add(app, User(email="plain@example.com", name="Ada 'the' Countess, -1 = fine"))

    rows = {row["email"]: row for row in export_users(app)}

    for start, name in names.items():
        assert rows[f"formula{ord(start)}@example.com"]["name"] == "'" + name
    for email in emails.values():
        assert rows["'" + email]["name"] == "Formula Email"
    assert rows["plain@example.com"]["name"] == "Ada 'the' Countess, -1 = fine"
    assert all(row["id"].isdigit() for row in rows.values())  # numbers are not text: unchanged


def pdf_of(app: Flask, name: str, descriptions: list[str]) -> tuple[str, bytes]:
    """Render an invoice of a user called `name` through the task; the PDF's text and bytes."""
    user_id = add(app, User(email=f"pdf-{len(name)}-{abs(hash(name))}@example.com", name=name))
    lines = [{"description": d, "quantity": 2, "unit_price_cents": 12345} for d in descriptions]
    invoice_id = add(
        app,
        Invoice(number="pending", user_id=user_id, currency="EUR", lines=lines, total_cents=0),
    )
    with app.app_context():
        invoice = db.session.get(Invoice, invoice_id)
        invoice.number, invoice.total_cents = f"INV-T-{invoice_id:06d}", 24690 * len(lines)
        db.session.commit()
    result = run(app, "invoices.generate_pdf", invoice_id)
    with app.app_context():
        data = Path(db.session.get(Invoice, invoice_id).pdf_path).read_bytes()
    assert result["bytes"] == len(data)
    return "".join(page.extract_text() for page in PdfReader(io.BytesIO(data)).pages), data


@pytest.mark.parametrize(
    ("name", "description"),
    [
        ("Łukasz Żółć", "Zażółć gęślą jaźń – usługi"),
        ("Αλέξανδρος Παπαδόπουλος", "Συμβουλευτικές υπηρεσίες"),
        ("Дмитрий Шостакович", "Консультационные услуги"),
    ],
)
def test_names_and_lines_in_polish_greek_and_cyrillic_are_in_the_pdf_as_written(
    app: Flask, name: str, description: str
) -> None:
    text, data = pdf_of(app, name, [description, "Reise € 5"])
    assert name in text
    assert description in text
    assert "Reise € 5" in text
    assert "246.90 EUR" in text and "493.80 EUR" in text
    assert b"/FontFile2" in data and FONT_FAMILY.encode() in data  # embedded, not core


def test_characters_the_font_lacks_are_replaced_and_the_job_still_succeeds(app: Flask) -> None:
    text, _ = pdf_of(app, "山田 Taro 😀", ["寿司 🍣 Sushi", "\x00\x1b[31m red"])
    assert "?? Taro ?" in text
    assert "?? ? Sushi" in text
    assert "??[31m red" in text
