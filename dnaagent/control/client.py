"""A small blocking client of the control API, for ``dnactl``.

``dnactl`` is a short-lived command, so it talks to the agent with the
standard library's HTTP client rather than a reactor. Where the API is:
``--api URL`` first, then the ``DNACTL_API`` environment variable, then the
``control.json`` file the agent writes in its state directory, then the
``[control]`` section of the configuration file.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from dnaagent.config import CONTROL_FILE, Config
from dnaagent.errors import ControlError


def api_url(cfg: Config, explicit: str | None = None) -> str:
    """The control API's base URL for this configuration."""
    if explicit:
        return explicit.rstrip("/")
    env = os.environ.get("DNACTL_API")
    if env:
        return env.rstrip("/")
    try:
        with open(os.path.join(cfg.agent.state_dir, CONTROL_FILE)) as f:
            data = json.load(f)
        host, port = str(data["host"]), int(data["port"])
    except (OSError, ValueError, KeyError, TypeError):
        host, port = cfg.control.host, cfg.control.port
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


class Client:
    """Calls the control API at ``base`` and decodes its JSON answers."""

    def __init__(self, base: str, timeout: float = 30.0) -> None:
        self.base = base
        self.timeout = timeout
        # The API is on loopback: an http_proxy set for the web must not apply.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def get(self, path: str, **query: Any) -> Any:
        """``GET path?query`` and return the decoded answer."""
        args = {k: v for k, v in query.items() if v is not None}
        if args:
            path += "?" + urllib.parse.urlencode(args)
        return self._call(urllib.request.Request(self.base + path, method="GET"))

    def post(self, path: str, body: Any) -> Any:
        """``POST path`` with a JSON body and return the decoded answer."""
        data = json.dumps(body).encode()
        req = urllib.request.Request(
            self.base + path,
            data=data,
            method="POST",
            headers={"content-type": "application/json"},
        )
        return self._call(req)

    def _call(self, req: urllib.request.Request) -> Any:
        try:
            with self._opener.open(req, timeout=self.timeout) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as e:
            try:
                message = json.loads(e.read()).get("error", e.reason)
            except (ValueError, AttributeError):
                message = e.reason
            raise ControlError(f"the agent refused: {message}") from None
        except urllib.error.URLError as e:
            reason = e.reason
            if isinstance(reason, ConnectionRefusedError) or "refused" in str(reason):
                raise ControlError(
                    f"the agent is not running (nothing answers at {self.base}); "
                    "start it with: systemctl start dnaagent, or twistd -n dnaagent"
                ) from None
            raise ControlError(f"cannot reach the agent at {self.base}: {reason}") from None
        except TimeoutError:
            raise ControlError(
                f"the agent at {self.base} did not answer within {self.timeout:g} s"
            ) from None
        except ValueError as e:
            raise ControlError(f"the agent at {self.base} sent an unreadable answer: {e}") from None
