"""P2's yardstick: a FastAPI hello-world with a response model, served by uvicorn with the same
options as the services (shopkit.server), one worker."""

from __future__ import annotations

import argparse

import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel


class Greeting(BaseModel):
    message: str


def create_app() -> FastAPI:
    app = FastAPI()

    @app.get("/hello")
    async def hello() -> Greeting:
        return Greeting(message="hello")

    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(
        create_app(),
        host="127.0.0.1",
        port=args.port,
        loop="uvloop",
        http="httptools",
        log_config=None,
        access_log=False,
        server_header=False,
    )


if __name__ == "__main__":
    main()
