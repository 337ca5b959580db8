"""Invoice PDFs: render an invoice into STORAGE_DIR/invoices/<number>.pdf with fpdf2.

Text is set in Fira Sans, shipped by the `fontpkg-fira-sans` package and embedded in the PDF, so
names and descriptions in Latin, Greek and Cyrillic scripts render as written; a character the
font has no glyph for (CJK, emoji) is printed as "?" rather than failing the job.

The file is written atomically under a name derived from the invoice number, and the run is
recorded in the ledger under `invoice_pdf:<id>`, so a second run does nothing.
"""

from __future__ import annotations

from importlib.resources import files
from typing import Any

from fpdf import FPDF
from fpdf.fonts import TTFFont

from ..data.db import utcnow
from ..data.models import Invoice
from ..reliability.task import job_task
from .rows import load
from .storage import atomic_write, storage_path

FONT_FAMILY = "FiraSans"
#: fpdf2 style -> font file of the `fontpkg_fira_sans` package.
FONT_FILES = {"": "FiraSans-Regular.ttf", "B": "FiraSans-Bold.ttf"}
MISSING_GLYPH = "?"


def _money(cents: int, currency: str) -> str:
    # integer arithmetic: a float loses cents above 2**53 / 100
    return f"{cents // 100:,}.{cents % 100:02d} {currency}"


def _new_pdf() -> tuple[FPDF, set[int]]:
    """A PDF with the fonts added, and the code points every one of them has a glyph for."""
    pdf = FPDF(format="A4")
    fonts = files("fontpkg_fira_sans") / "files"
    for style, name in FONT_FILES.items():
        pdf.add_font(FONT_FAMILY, style, str(fonts / name))
    glyphs = [set(f.cmap) for f in pdf.fonts.values() if isinstance(f, TTFFont)]
    return pdf, set.intersection(*glyphs)


def render_invoice(invoice: Invoice) -> bytes:
    """The invoice as PDF bytes: header, customer, one row per line, total."""
    pdf, glyphs = _new_pdf()
    pdf.set_title(f"Invoice {invoice.number}")
    pdf.add_page()

    def cell(width: float, height: float, text: str, **options: Any) -> None:
        printable = "".join(c if ord(c) in glyphs else MISSING_GLYPH for c in text)
        pdf.cell(width, height, printable, **options)

    pdf.set_font(FONT_FAMILY, "B", 18)
    cell(0, 12, f"Invoice {invoice.number}", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font(FONT_FAMILY, size=11)
    customer = f"Customer: {invoice.user.name} <{invoice.user.email}>"
    cell(0, 7, customer, new_x="LMARGIN", new_y="NEXT")
    cell(0, 7, f"Date: {invoice.created_at:%Y-%m-%d}", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(6)
    pdf.set_font(FONT_FAMILY, "B", 11)
    for title, width in (("Description", 100), ("Qty", 20), ("Unit price", 35), ("Amount", 35)):
        cell(width, 8, title, border=1)
    pdf.ln()
    pdf.set_font(FONT_FAMILY, size=11)
    for line in invoice.lines:
        amount = line["quantity"] * line["unit_price_cents"]
        cell(100, 8, str(line["description"])[:60], border=1)
        cell(20, 8, str(line["quantity"]), border=1)
        cell(35, 8, _money(line["unit_price_cents"], invoice.currency), border=1)
        cell(35, 8, _money(amount, invoice.currency), border=1)
        pdf.ln()
    pdf.set_font(FONT_FAMILY, "B", 12)
    cell(155, 10, "Total", border=1)
    cell(35, 10, _money(invoice.total_cents, invoice.currency), border=1)
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
