"""Entry point: ``python -m shop_user.main``."""

from __future__ import annotations

from shopkit.server import serve

from shop_user.settings import UserSettings


def main() -> None:
    serve("shop_user.app:create_app", UserSettings())


if __name__ == "__main__":
    main()
