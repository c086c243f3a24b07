"""The schema: Alembic migrations build it on an empty database."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from cds_service.storage import (
    upgrade_database,
)
from cds_service.storage.db import sync_url
from cds_service.storage.migrations import downgrade_database
from cds_service.storage.models import Base
from tests.storage.support import (
    BACKENDS,
    Databases,
)

# --- migrations ------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_migrations_build_the_schema_on_an_empty_database(backend: str, databases: Databases) -> None:
    url = databases.new(backend)
    upgrade_database(url)
    upgrade_database(url)  # a second run is a no-op
    engine = sa.create_engine(sync_url(url))
    try:
        inspector = sa.inspect(engine)
        assert {"issued_cards", "feedback", "alembic_version"} <= set(inspector.get_table_names())
        uniques = {tuple(u["column_names"]) for u in inspector.get_unique_constraints("feedback")}
        assert ("card_uuid", "service_id", "outcome", "outcome_timestamp") in uniques
        with engine.connect() as connection:
            assert connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one() == "0004"
            # The revision and models.py describe the same schema.
            assert (
                compare_metadata(MigrationContext.configure(connection, opts={"compare_type": True}), Base.metadata)
                == []
            )
        engine.dispose()
        downgrade_database(url)
        assert set(sa.inspect(engine).get_table_names()) == {"alembic_version"}
        upgrade_database(url)
        assert {"issued_cards", "feedback"} <= set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()
