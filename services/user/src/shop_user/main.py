"""Entry point: ``python -m shop_user.main`` serves; ``... main migrate`` migrates and exits."""

from __future__ import annotations

from pathlib import Path

from shopkit import server

from shop_user.settings import UserSettings


def main() -> None:
    server.main(
        "shop_user.app:create_app",
        UserSettings(),
        migrations=Path(__file__).with_name("migrations"),
    )


if __name__ == "__main__":
    main()
