"""Pytest fixtures every service's tests share (registered by the repository's conftest.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from shopkit.testing import TokenFactory, serve_jwks


@pytest.fixture
def tokens() -> TokenFactory:
    """Mints tokens the way the user service does, with a key of the test's own."""
    return TokenFactory()


@pytest.fixture
async def jwks_url(tokens: TokenFactory) -> AsyncIterator[str]:
    """A real HTTP server publishing ``tokens``' keys: what services take as the user URL."""
    async with serve_jwks(tokens) as url:
        yield url
