"""Regenerate the sample PDFs (one good, one truncated, one encrypted).

Run from the repo root: ``python datasets/sample/make_pdfs.py``. The files are committed; this
script documents how they were made.
"""

from __future__ import annotations

import io
from pathlib import Path

HERE = Path(__file__).resolve().parent / "corpus"

LINES = [
    "Lumen security guide",
    "Lumen encrypts every connection to the collector with TLS 1.3.",
    "Client certificates are configured with the tls_cert and tls_key keys.",
    "Secrets such as collector tokens are read from environment variables only.",
    "Lumen runs as an unprivileged user named lumen when installed as a service.",
]


def text_pdf(lines: list[str]) -> bytes:
    content = (
        "BT /F1 12 Tf 72 720 Td 16 TL\n"
        + "".join(f"({line.replace('(', '[').replace(')', ']')}) Tj T*\n" for line in lines)
        + "ET"
    )
    objects = [
        "<< /Type /Catalog /Pages 2 0 R >>",
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 4 0 R"
        " >> >> /Contents 5 0 R >>",
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        f"<< /Length {len(content)} >>\nstream\n{content}\nendstream",
    ]
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for i, obj in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(f"{i} 0 obj\n{obj}\nendobj\n".encode())
    xref = out.tell()
    out.write(f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode())
    for off in offsets:
        out.write(f"{off:010d} 00000 n \n".encode())
    out.write(
        f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    )
    return out.getvalue()


def main() -> None:
    from pypdf import PdfReader, PdfWriter

    good = text_pdf(LINES)
    (HERE / "guides" / "security.pdf").write_bytes(good)
    (HERE / "broken" / "truncated.pdf").write_bytes(good[: len(good) // 3])
    writer = PdfWriter()
    for page in PdfReader(io.BytesIO(text_pdf(["Secret roadmap for Lumen 2.0"]))).pages:
        writer.add_page(page)
    writer.encrypt(user_password="lumen-secret", algorithm="RC4-128")
    buf = io.BytesIO()
    writer.write(buf)
    (HERE / "broken" / "encrypted.pdf").write_bytes(buf.getvalue())


if __name__ == "__main__":
    main()
