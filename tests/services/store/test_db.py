"""The store's engine: on a PostgreSQL database whatever its encoding, and on a store an older version created."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlmodel import Session, select

from schemas.messages import AdapterEvent
from schemas.tables import Adapter, Sample
from services.store.db import open_store
from services.store.upsert import upsert_messages


@pytest.mark.postgres
def test_a_sql_ascii_database_reads_back_text(postgres_server_url):
    # An initdb run without a UTF-8 locale (a bare container, say) makes SQL_ASCII databases.
    name = f"loop_ascii_{uuid.uuid4().hex[:12]}"
    admin = create_engine(postgres_server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f"CREATE DATABASE \"{name}\" TEMPLATE template0 ENCODING 'SQL_ASCII' "
                                "LC_COLLATE 'C' LC_CTYPE 'C'"))
    engine = None
    try:
        engine = open_store(url=make_url(postgres_server_url).set(database=name).render_as_string(hide_password=False))
        with Session(engine) as session:
            session.add(Sample(id="s-1", round=1, family="arithmetic", difficulty=5, problem="12+30 → é",
                               status="pending"))
            session.commit()
        with Session(engine) as session:
            assert session.exec(select(Sample.problem)).one() == "12+30 → é"
    finally:
        if engine is not None:
            engine.dispose()
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_a_store_an_older_version_created_gains_the_new_columns_and_keeps_its_rows(database_url):
    engine = open_store(url=database_url)
    with engine.begin() as connection:  # the adapter table as it was before promotion times were kept
        connection.execute(text('ALTER TABLE adapter DROP COLUMN promoted_at'))
        connection.execute(text("INSERT INTO adapter (id, base_model, path, status) VALUES ('a0', 'builtin', '/a0', "
                                "'promoted')"))
    engine.dispose()

    engine = open_store(url=database_url)
    try:
        promoted = AdapterEvent(adapter_id="a1", base_model="builtin", path="/a1", status="promoted")
        with engine.begin() as connection:
            upsert_messages(connection, {AdapterEvent: [promoted]})
        with Session(engine) as session:
            rows = {a.id: a for a in session.exec(select(Adapter))}
        assert rows["a0"].promoted_at is None and rows["a0"].path == "/a0"
        assert rows["a1"].promoted_at is not None
    finally:
        engine.dispose()
