from shop_notification.models import Base
from shopkit.migrations import run_env

run_env(Base.metadata)
