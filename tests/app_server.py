"""Run the finsent service with uvicorn on 127.0.0.1:0 in a thread, for tests that call it over real HTTP."""

import contextlib
import threading
import time
from collections.abc import Iterator

import httpx
import uvicorn

from finsent.calibration import UNCALIBRATED, Calibration
from finsent.config import ServeConfig
from finsent.serve.app import create_app
from finsent.tasks import TASKS, Task


@contextlib.contextmanager
def serving(
    backend, task: Task | None = None, calibration: Calibration = UNCALIBRATED, **limits
) -> Iterator[httpx.Client]:
    """Serve ``backend`` for ``task`` under ``ServeConfig(**limits)`` on a free port; yield an httpx client for it."""
    app = create_app(backend, ServeConfig(**limits), task or TASKS.get("sentiment"), calibration=calibration)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        assert thread.is_alive(), "uvicorn did not start"
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            yield client
    finally:
        server.should_exit = True
        thread.join(timeout=10)
