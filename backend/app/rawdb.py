"""Statements of the hottest paths through a pooled DBAPI connection.

The ORM session's checkout, Result machinery and object loading cost more CPU than the query
itself: measured in-process, a signed-in user's lookup took 788 us of CPU through the ORM, 451 us
as text() through the session and 249 us here; a list page 400 us against 170 us
(docs/performance.md). Errors are SQLAlchemy's, as through the session: a lost server is a 503
(errors.py), a broken constraint an IntegrityError."""
from __future__ import annotations

import psycopg2
from sqlalchemy.exc import DBAPIError

from .extensions import db


def fetch(sql: str, params: dict, commit: bool = False) -> list[tuple]:
    """The rows of one statement (psycopg2's %(name)s parameters); with commit, its transaction
    committed before the connection goes back to the pool (which rolls back anything else)."""
    conn = None
    try:
        conn = db.engine.raw_connection()
        cur = conn.cursor()
        try:
            cur.execute(sql, params)
            rows = cur.fetchall() if cur.description is not None else []
        finally:
            cur.close()
        if commit:
            conn.commit()
        return rows
    except psycopg2.Error as e:
        gone = conn is not None and db.engine.dialect.is_disconnect(e, conn.dbapi_connection,
                                                                    None)
        if gone:
            conn.invalidate(e)
        raise DBAPIError.instance(sql, params, e, psycopg2.Error,
                                  connection_invalidated=gone) from e
    finally:
        if conn is not None:
            conn.close()  # back to the pool (rolled back there)
