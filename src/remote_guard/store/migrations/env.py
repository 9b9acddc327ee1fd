"""Alembic environment: runs on the connection remote_guard hands it (see store.db.migrate)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from remote_guard.store.db import Base, import_models

import_models()
target_metadata = Base.metadata
config = context.config

connection = config.attributes.get("connection")
if connection is None:
    # Run from the alembic command line: the URL comes from -x url=... .
    url = context.get_x_argument(as_dictionary=True).get("url", "sqlite:///var/remote_guard.db")
    engine = create_engine(url)
    with engine.begin() as own_connection:
        context.configure(
            connection=own_connection, target_metadata=target_metadata, render_as_batch=True
        )
        context.run_migrations()
else:
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
