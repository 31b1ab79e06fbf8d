"""moto_server for the local mode, with DynamoDB requests answered one at a time.

moto's DynamoDB backend checks a ConditionExpression and then writes without a lock, so two requests served by
two of moto_server's threads could both pass the same condition; DynamoDB applies each request atomically. The
launcher applies a batch's messages concurrently, so the local mode serializes DynamoDB requests here (an
emulation fix; nothing in the control plane depends on it beyond what DynamoDB guarantees). Other services are
served concurrently as moto_server does (SQS long polls must not hold anything up).

``python -m harness.local.moto_server -H 127.0.0.1 -p PORT``
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterable
from typing import Any


def atomic_dynamodb(app: Callable[..., Iterable[bytes]]) -> Callable[..., Iterable[bytes]]:
    """Wrap a WSGI app so that DynamoDB requests (``X-Amz-Target: DynamoDB_…``) run one at a time."""
    lock = threading.Lock()

    def serve(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("HTTP_X_AMZ_TARGET", "").startswith("DynamoDB_"):
            with lock:
                return list(app(environ, start_response))
        return app(environ, start_response)

    return serve


def main(argv: list[str] | None = None) -> None:
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import run_simple

    parser = argparse.ArgumentParser(prog="python -m harness.local.moto_server")
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, required=True)
    args = parser.parse_args(argv)
    # As moto_server does: queue URLs and the like carry this port; a signal ends the server cleanly.
    os.environ.setdefault("MOTO_PORT", str(args.port))
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: sys.exit(0))
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(
        args.host,
        args.port,
        atomic_dynamodb(app),
        threaded=True,
        use_reloader=False,
        request_handler=MotoRequestHandler,
    )


if __name__ == "__main__":
    main()
