"""Alembic environment of the user service; run through shopkit.migrations.migrate()."""

from shop_user.models import Base
from shopkit.migrations import run_env

run_env(Base.metadata)
