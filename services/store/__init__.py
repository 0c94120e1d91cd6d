"""The dataset store: the SQL view of the loop, written only by the store writer from the event topics."""

from services.store.db import create_tables, is_empty, make_engine, normalize_url, open_store, session_scope
from services.store.upsert import PROJECTIONS, dead_letter_id, eval_record_id, upsert_events, upsert_messages
from services.store.writer import DEFAULT_GROUP_ID, STORE_TOPICS, StoreWriter

__all__ = [
    "DEFAULT_GROUP_ID",
    "PROJECTIONS",
    "STORE_TOPICS",
    "StoreWriter",
    "create_tables",
    "dead_letter_id",
    "eval_record_id",
    "is_empty",
    "make_engine",
    "normalize_url",
    "open_store",
    "session_scope",
    "upsert_events",
    "upsert_messages",
]
