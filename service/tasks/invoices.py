"""Invoice PDFs: render an invoice into STORAGE_DIR/invoices/<number>.pdf with fpdf2.

The file is written atomically under a name derived from the invoice number, and the run is
recorded in the ledger under `invoice_pdf:<id>`, so a second run does nothing.
"""

from __future__ import annotations

from typing import Any

from fpdf import FPDF

from ..data.db import utcnow
from ..data.models import Invoice
from ..reliability.task import job_task
from .rows import load
from .storage import atomic_write, storage_path


def _money(cents: int, currency: str) -> str:
    return f"{cents / 100:,.2f} {currency}"


def render_invoice(invoice: Invoice) -> bytes:
    """The invoice as PDF bytes: header, customer, one row per line, total."""
    pdf = FPDF(format="A4")
    pdf.set_title(f"Invoice {invoice.number}")
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 18)
    pdf.cell(0, 12, f"Invoice {invoice.number}", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", size=11)
    pdf.cell(
        0, 7, f"Customer: {invoice.user.name} <{invoice.user.email}>", new_x="LMARGIN", new_y="NEXT"
    )
    pdf.cell(0, 7, f"Date: {invoice.created_at:%Y-%m-%d}", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(6)
    pdf.set_font("Helvetica", "B", 11)
    for title, width in (("Description", 100), ("Qty", 20), ("Unit price", 35), ("Amount", 35)):
        pdf.cell(width, 8, title, border=1)
    pdf.ln()
    pdf.set_font("Helvetica", size=11)
    for line in invoice.lines:
        amount = line["quantity"] * line["unit_price_cents"]
        pdf.cell(100, 8, str(line["description"])[:60], border=1)
        pdf.cell(20, 8, str(line["quantity"]), border=1)
        pdf.cell(35, 8, _money(line["unit_price_cents"], invoice.currency), border=1)
        pdf.cell(35, 8, _money(amount, invoice.currency), border=1)
        pdf.ln()
    pdf.set_font("Helvetica", "B", 12)
    pdf.cell(155, 10, "Total", border=1)
    pdf.cell(35, 10, _money(invoice.total_cents, invoice.currency), border=1)
    return bytes(pdf.output())


@job_task("invoices.generate_pdf", key=lambda invoice_id: f"invoice_pdf:{invoice_id}")
def generate_pdf(invoice_id: int) -> dict[str, Any]:
    """Render the invoice's PDF and record where it is."""
    invoice = load(Invoice, invoice_id)
    target = storage_path("invoices", f"{invoice.number}.pdf")
    atomic_write(target, render_invoice(invoice))
    invoice.pdf_path = str(target)
    invoice.rendered_at = utcnow()
    return {"invoice_id": invoice.id, "number": invoice.number, "bytes": target.stat().st_size}
