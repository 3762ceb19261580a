"""The web page in headless Chromium: type a text, press the button, see the label and the reasoning.

Chromium is driven over the DevTools protocol through ``--remote-debugging-pipe`` (JSON messages on file
descriptors 3 and 4), so no driver or websocket package is needed. The model behind the service is faked by the
local OpenAI-compatible server (tests/fake_openai_server.py): the random tiny model names no label, and this test is
about the page, the service and the backend in between, which all run for real.
"""

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import time

import pytest

from app_server import serving
from fake_openai_server import FakeOpenAIServer
from finsent.config import ModelConfig
from finsent.serve.backends import load_backend

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no Chromium on PATH: .ci/run installs Debian's chromium (apt-get install chromium)"
)
TEXT = "Operating profit rose to EUR 13.1 mn from EUR 8.7 mn in the same period a year earlier."


class DevTools:
    """A Chromium started headless with the DevTools protocol on a pipe; ``call`` sends one command to the page."""

    def __init__(self, user_data_dir: str) -> None:
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()
        # Chromium reads commands on fd 3 and writes replies on fd 4: bash moves the pipe ends there, from fds
        # above 9 so that neither end already sits on 3 or 4.
        ends = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (to_browser_r, from_browser_w)]
        for fd in (to_browser_r, from_browser_w):
            os.close(fd)
        flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--remote-debugging-pipe"]
        flags.append(f"--user-data-dir={user_data_dir}")
        self.process = subprocess.Popen(
            ["bash", "-c", f'exec "$0" "$@" 3<&{ends[0]} 4>&{ends[1]}', CHROMIUM, *flags, "about:blank"],
            pass_fds=ends,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for fd in ends:
            os.close(fd)
        self._buffer = b""
        self._next_id = 0
        target = self.call("Target.createTarget", url="about:blank", session=None)["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True, session=None)["sessionId"]

    def call(self, method: str, session: str | None | bool = True, **params: object) -> dict:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params}
        if session is True:
            message["sessionId"] = self.session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        while True:
            while b"\0" not in self._buffer:
                chunk = os.read(self._from_browser, 1 << 16)
                assert chunk, "Chromium closed the DevTools pipe"
                self._buffer += chunk
            raw, self._buffer = self._buffer.split(b"\0", 1)
            reply = json.loads(raw)
            if reply.get("id") == self._next_id:
                assert "error" not in reply, reply["error"]
                return reply["result"]

    def evaluate(self, expression: str) -> object:
        result = self.call("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True)
        return result["result"].get("value")

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)
        os.close(self._to_browser)
        os.close(self._from_browser)


@contextlib.contextmanager
def chromium(tmp_path):
    browser = DevTools(str(tmp_path / "chromium-profile"))
    try:
        yield browser
    finally:
        browser.close()


def wait_for(browser: DevTools, expression: str, timeout_s: float = 30) -> object:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = browser.evaluate(expression)
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {expression}")


def click(browser: DevTools, element_id: str) -> None:
    box = browser.evaluate(f"JSON.stringify(document.getElementById('{element_id}').getBoundingClientRect())")
    rect = json.loads(str(box))
    x, y = rect["x"] + rect["width"] / 2, rect["y"] + rect["height"] / 2
    for kind in ("mousePressed", "mouseReleased"):
        browser.call("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)


def test_typing_a_text_shows_its_label_and_reasoning(tmp_path):
    with FakeOpenAIServer() as upstream:
        backend = load_backend(ModelConfig(path="upstream-model", backend="openai", base_url=upstream.url))
        with serving(backend) as client, chromium(tmp_path) as browser:
            browser.call("Page.navigate", url=str(client.base_url) + "/")
            wait_for(browser, "document.readyState === 'complete' && !!document.getElementById('text')")
            browser.evaluate("document.getElementById('text').focus()")
            browser.call("Input.insertText", text=TEXT)  # typed as the keyboard would, with input events
            click(browser, "submit")
            wait_for(browser, "['label', 'error'].some((id) => document.getElementById(id).textContent.trim())")
            shown = browser.evaluate(
                "Object.fromEntries(['label', 'reasoning', 'status', 'error']"
                ".map((id) => [id, document.getElementById(id).textContent]))"
            )
    assert shown["error"] == "" and shown["label"] == "neutral", shown
    assert "statement" in shown["reasoning"] and shown["status"].startswith("format ok")
    assert upstream.count(TEXT) == 1  # the typed text went through the service to the model
