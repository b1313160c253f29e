"""Dependencies of the user service's routes: objects the setup hook put on app.state."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from shopkit.db import Database

from shop_user.passwords import Passwords
from shop_user.tokens import TokenSigner


def get_passwords(request: Request) -> Passwords:
    passwords: Passwords = request.app.state.passwords
    return passwords


def get_signer(request: Request) -> TokenSigner:
    signer: TokenSigner = request.app.state.signer
    return signer


def get_database(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


PasswordsDep = Annotated[Passwords, Depends(get_passwords)]
SignerDep = Annotated[TokenSigner, Depends(get_signer)]
DatabaseDep = Annotated[Database, Depends(get_database)]
