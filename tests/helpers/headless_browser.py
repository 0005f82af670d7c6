"""Load a local page in headless Chromium over the DevTools protocol: its console errors and its images' natural
sizes after the load event."""
from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--remote-debugging-port=0"]
IMAGES = ("JSON.stringify(Array.from(document.images).map(i => ({src: i.getAttribute('src'), "
          "width: i.naturalWidth, height: i.naturalHeight})))")


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def load_page(page: Path, profile: Path, timeout: float = 60.0) -> tuple[list[str], list[dict]]:
    """(console errors and uncaught exceptions, [{src, width, height}] of every <img>) of ``page``."""
    import websocket

    proc = subprocess.Popen([chromium(), *FLAGS, f"--user-data-dir={profile}", "about:blank"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port_file, deadline = profile / "DevToolsActivePort", time.time() + timeout
        while not port_file.is_file() or not port_file.read_text().strip():
            if time.time() > deadline or proc.poll() is not None:
                raise RuntimeError(f"chromium did not open its DevTools port (exit code {proc.poll()})")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=timeout) as response:
            target = next(t for t in json.load(response) if t["type"] == "page")
        ws = websocket.create_connection(target["webSocketDebuggerUrl"], timeout=timeout, suppress_origin=True)
        ids = iter(range(1, 1_000_000))

        def send(method: str, **params) -> int:
            message_id = next(ids)
            ws.send(json.dumps({"id": message_id, "method": method, "params": params}))
            return message_id

        errors: list[str] = []

        def pump(until_id: int | None = None, until_event: str | None = None) -> dict:
            while True:
                message = json.loads(ws.recv())
                method, params = message.get("method"), message.get("params", {})
                if method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
                    errors.append(" ".join(str(a.get("value", a.get("description"))) for a in params["args"]))
                elif method == "Runtime.exceptionThrown":
                    errors.append(params["exceptionDetails"].get("text", "exception"))
                elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
                    errors.append(f"{params['entry']['text']} {params['entry'].get('url', '')}")
                if (until_id is not None and message.get("id") == until_id) or \
                        (until_event is not None and method == until_event):
                    return message

        for method in ("Page.enable", "Runtime.enable", "Log.enable"):
            pump(until_id=send(method))
        send("Page.navigate", url=page.resolve().as_uri())
        pump(until_event="Page.loadEventFired")
        result = pump(until_id=send("Runtime.evaluate", expression=IMAGES, returnByValue=True))
        ws.close()
        return errors, json.loads(result["result"]["result"]["value"])
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
