"""Alembic environment: run by :func:`ephys.catalog.db.upgrade` with a live connection."""

from alembic import context

from ephys.catalog.models import Base

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
