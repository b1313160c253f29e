"""Alembic environment of the product service (run by shopkit.migrations.migrate)."""

from shop_product.models import Base
from shopkit.migrations import run_env

run_env(Base.metadata)
