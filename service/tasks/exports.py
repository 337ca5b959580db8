"""CSV exports of a whole table, reporting progress as the task state `PROGRESS`.

Rows are read in primary-key order in batches, written to a temporary file and moved into
place at the end, so a download never sees a partial file and a rerun starts from scratch.
Text that a spreadsheet would run as a formula is written with a leading single quote.
"""

from __future__ import annotations

import csv
from typing import Any

import sqlalchemy as sa
from celery import current_task
from flask import current_app

from ..data.db import db, utcnow
from ..data.models import EmailLog, Export, Invoice, User, WebhookDelivery
from ..reliability.task import job_task
from .rows import load
from .storage import atomic_file, storage_path

#: Tables that may be exported, and the columns that go into the file (no secrets).
EXPORTABLE: dict[str, tuple[type[Any], tuple[str, ...]]] = {
    "users": (User, ("id", "email", "name", "plan", "trial_ends_at", "created_at")),
    "invoices": (Invoice, ("id", "number", "user_id", "currency", "total_cents", "created_at")),
    "email_log": (EmailLog, ("id", "user_id", "kind", "recipient", "subject", "sent_at")),
    "webhook_deliveries": (
        WebhookDelivery,
        ("id", "event_id", "endpoint_id", "event_type", "status", "attempts", "created_at"),
    ),
}


def _mark_failed(export_id: int) -> None:
    export = db.session.get(Export, export_id)
    if export is not None:
        export.status, export.finished_at = "failed", utcnow()


@job_task(
    "exports.export_table", key=lambda export_id: f"export:{export_id}", on_dead_letter=_mark_failed
)
def export_table(export_id: int) -> dict[str, Any]:
    """Write the export's table to STORAGE_DIR/exports/export-<id>.csv."""
    export = load(Export, export_id)
    model, columns = EXPORTABLE[export.table_name]
    export.status = "running"
    db.session.commit()

    total = db.session.scalar(sa.select(sa.func.count()).select_from(model)) or 0
    batch = int(current_app.config["EXPORT_BATCH_SIZE"])
    target = storage_path("exports", f"export-{export.id}.csv")
    done, last_id = 0, 0
    with atomic_file(target, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        while True:
            rows = db.session.scalars(
                sa.select(model).where(model.id > last_id).order_by(model.id).limit(batch)
            ).all()
            if not rows:
                break
            for row in rows:
                writer.writerow([_cell(getattr(row, c)) for c in columns])
            done += len(rows)
            last_id = rows[-1].id
            current_task.update_state(
                state="PROGRESS", meta={"done": done, "total": max(total, done)}
            )
    export.status, export.row_count, export.path = "done", done, str(target)
    export.finished_at = utcnow()
    return {"export_id": export.id, "rows": done}


#: What a spreadsheet reads as the start of a formula (OWASP, "CSV Injection").
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value
