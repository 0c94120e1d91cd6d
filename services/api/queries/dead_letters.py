"""Dead letters: what a consumer could not read, with its bytes shown safely.

The kept bytes are arbitrary (binary, broken UTF-8, terminal escapes, right-to-left overrides): they are shown
as text with every byte that is not valid UTF-8 and every control or bidirectional-formatting character escaped,
and as a hex dump; the HTML pages escape both again like any other text.
"""

from __future__ import annotations

import base64
import binascii
import unicodedata

from sqlalchemy import func, select
from sqlmodel import Session, col

from schemas.tables import DeadLetterRecord
from services.api.errors import NotFound
from services.api.models import DeadLetterOut, Page

HEX_DUMP_BYTES = 256


def raw_bytes(raw_b64: str) -> bytes:
    try:
        return base64.b64decode(raw_b64, validate=False)
    except (binascii.Error, ValueError):
        return b""


def safe_text(raw: bytes) -> str:
    """The bytes as printable text: ``\\xNN`` for bytes that are not UTF-8, ``\\uNNNN`` for invisible characters."""
    text = raw.decode("utf-8", errors="backslashreplace")
    out = []
    for char in text:
        if char in "\n\t":
            out.append(char)
        elif unicodedata.category(char) in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"):
            out.append(f"\\u{ord(char):04x}" if ord(char) <= 0xFFFF else f"\\U{ord(char):08x}")
        else:
            out.append(char)
    return "".join(out)


def hex_dump(raw: bytes, *, limit: int = HEX_DUMP_BYTES) -> str:
    """16 bytes per line: offset, hex, and the printable ASCII characters."""
    lines = []
    for start in range(0, min(len(raw), limit), 16):
        chunk = raw[start : start + 16]
        ascii_part = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        lines.append(f"{start:08x}  {chunk.hex(' '):<47}  {ascii_part}")
    return "\n".join(lines)


def dead_letter_out(record: DeadLetterRecord) -> DeadLetterOut:
    raw = raw_bytes(record.raw_b64)
    return DeadLetterOut(
        id=record.id,
        source_topic=record.source_topic,
        partition=record.partition,
        offset=record.offset,
        source_key=record.source_key,
        consumer_group=record.consumer_group,
        error=safe_text(record.error.encode()),
        raw_size=record.raw_size,
        raw_b64=record.raw_b64,
        raw_kept=len(raw),
        raw_text=safe_text(raw),
        raw_hex=hex_dump(raw),
        created_at=record.created_at,
    )


def list_dead_letters(
    session: Session,
    *,
    source_topic: str | None = None,
    consumer_group: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> Page[DeadLetterOut]:
    where = []
    if source_topic:
        where.append(col(DeadLetterRecord.source_topic) == source_topic)
    if consumer_group:
        where.append(col(DeadLetterRecord.consumer_group) == consumer_group)
    total = session.exec(select(func.count()).select_from(DeadLetterRecord).where(*where)).one()[0]
    rows = session.exec(
        select(DeadLetterRecord)
        .where(*where)
        .order_by(col(DeadLetterRecord.created_at).desc().nulls_last(), col(DeadLetterRecord.id).desc())
        .limit(limit)
        .offset(offset)
    ).all()
    return Page[DeadLetterOut](items=[dead_letter_out(row) for (row,) in rows], total=total, limit=limit, offset=offset)


def get_dead_letter(session: Session, *, dead_letter_id: str) -> DeadLetterOut:
    record = session.get(DeadLetterRecord, dead_letter_id)
    if record is None:
        raise NotFound(f"dead letter {dead_letter_id!r} not found")
    return dead_letter_out(record)
