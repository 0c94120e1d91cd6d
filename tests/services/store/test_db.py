"""The store's engine on a PostgreSQL database whatever its encoding."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlmodel import Session, select

from schemas.tables import Sample
from services.store.db import open_store

pytestmark = pytest.mark.postgres


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
