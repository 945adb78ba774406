"""The CLI's one client for a running gateway (docs/design/cli.md, CLI-I3 and CLI-I4).

It finds the gateway through its lock (``running_gateway``: the flock says one runs, the owner
record says which pid, ``gateway.url`` where it listens), sends what the API asks of a request
that changes something (``Content-Type: application/json``, ``X-Fencepost: 1``) and the bearer
token when ``server.token_env`` names one, and turns every HTTP error into a fencepost error the
CLI's one error boundary maps to an exit code. Standard library only: the CLI starts fast.
"""

from __future__ import annotations

import http.client
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from ...errors import (
    ApprovalDecidedError,
    ApprovalNotFoundError,
    ConfigError,
    FencepostError,
    GatewayError,
    JobNotFoundError,
)
from ...runtime.config import StatePaths, state_config
from ...runtime.gateway import running_gateway

__all__ = ["GatewayClient"]

#: A request that does not wait for a run answers at once; this only bounds a hung gateway.
DEFAULT_TIMEOUT_S = 30.0

#: ``?wait=true`` lasts as long as the run (a job's own timeout bounds it on the gateway).
WAIT_TIMEOUT_S = 24 * 3600.0


class GatewayClient:
    """Requests to the gateway that runs on a state directory."""

    def __init__(
        self, url: str, *, pid: object = None, token: str | None, token_env: str | None
    ) -> None:
        self.url = url.rstrip("/") + "/"
        self.pid = pid
        self.token = token
        self.token_env = token_env

    def __repr__(self) -> str:
        auth = f"token from ${self.token_env}" if self.token else "no token"
        return f"<GatewayClient {self.url} pid={self.pid} {auth}>"

    @classmethod
    def find(
        cls, paths: StatePaths, config: str | os.PathLike[str] | None = None
    ) -> GatewayClient | None:
        """The client for the gateway running on ``paths``, or None when none runs there."""
        owner = running_gateway(paths)
        if owner is None:
            return None
        url = owner.get("url")
        if not url:
            raise GatewayError(
                f"a gateway (pid {owner.get('pid', '?')}) holds {paths.root} but has not written "
                f"{Path(paths.root) / 'gateway.url'} yet; it may still be starting: try again"
            )
        # Invariant CLI-I3: the token the gateway asks for, from the variable its config names.
        token_env = state_config(paths, config).server.token_env
        token = os.environ.get(token_env) if token_env else None
        return cls(url, pid=owner.get("pid"), token=token or None, token_env=token_env)

    def headers(self) -> dict[str, str]:
        """What every request carries (Invariant CLI-I3; the guard is HTTP-I1 and HTTP-I6)."""
        out = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "X-Fencepost": "1",
            "User-Agent": "fencepost-cli",
        }
        if self.token:
            out["Authorization"] = f"Bearer {self.token}"
        return out

    def request(
        self,
        method: str,
        path: str,
        body: object | None = None,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        job_id: str | None = None,
        approval_id: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """One JSON request; an error answer or no answer raises (Invariant CLI-I4)."""
        url = self.url + path.lstrip("/")
        data = json.dumps({} if body is None else body).encode() if method != "GET" else None
        req = urllib.request.Request(
            url, data=data, method=method, headers={**self.headers(), **(headers or {})}
        )
        try:
            with urllib.request.urlopen(req, timeout=timeout_s) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            raise self._refusal(
                exc.code, exc.read(), job_id=job_id, approval_id=approval_id
            ) from None
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise GatewayError(
                f"the gateway (pid {self.pid}) at {self.url} did not answer: {reason}; "
                "`fencepost doctor` shows whether it runs",
                url=self.url,
            ) from None
        try:
            out = json.loads(raw or b"{}")
        except ValueError:
            out = None
        if not isinstance(out, dict):
            raise GatewayError(
                f"the gateway at {self.url} answered {method} {path} with something that is not "
                "a JSON object; is another program listening on that port?",
                url=self.url,
            )
        return out

    def run_job(self, job_id: str, *, wait: bool) -> dict[str, Any]:  # Invariant CLI-I3
        """``POST /api/jobs/{job_id}/run``: the run's row (``wait``) or its id (202)."""
        path = f"api/jobs/{urllib.parse.quote(job_id, safe='')}/run"
        if wait:
            return self.request(
                "POST", path + "?wait=true", timeout_s=WAIT_TIMEOUT_S, job_id=job_id
            )
        return self.request("POST", path, job_id=job_id)

    def reload(self) -> dict[str, Any]:
        """``POST /api/reload``: what changed; a refused config raises a ConfigError naming
        the file, key and line (the gateway keeps its old config; GATEWAY-I8)."""
        return self.request("POST", "api/reload")

    def approvals(self) -> dict[str, Any]:
        """``GET /api/approvals``: the tool calls waiting for an operator."""
        return self.request("GET", "api/approvals")

    def decide_approval(
        self, approval_id: str, *, approve: bool, reason: str, by: str
    ) -> dict[str, Any]:
        """``POST /api/approvals/{id}`` as ``by`` (``cli:<user>``; docs/design/approvals.md,
        APPROVAL-I7): the decision, once it is in the transcript."""
        return self.request(
            "POST",
            f"api/approvals/{urllib.parse.quote(approval_id, safe='')}",
            {"decision": "approve" if approve else "deny", "reason": reason},
            approval_id=approval_id,
            headers={"X-Fencepost-Decider": by},
        )

    def _refusal(
        self, status: int, raw: bytes, *, job_id: str | None, approval_id: str | None = None
    ) -> FencepostError:
        """The fencepost error for an API error answer (Invariant CLI-I4)."""
        try:
            err = json.loads(raw).get("error", {})
            code, message, field = err.get("code"), err.get("message"), err.get("field")
            file = err.get("file")
        except (ValueError, AttributeError):
            err, code, message, field = {}, None, raw.decode(errors="replace")[:200], None
            file = None
        message = message or f"HTTP {status}"
        if code == "job_not_found" and job_id is not None:
            return JobNotFoundError(job_id, why=f"the gateway at {self.url} has no such job")
        if code == "approval_not_found" and approval_id is not None:
            return ApprovalNotFoundError(approval_id)
        if code == "approval_decided" and approval_id is not None:
            return ApprovalDecidedError(
                approval_id, approved=bool(err.get("approved")), by=str(err.get("by") or "?")
            )
        if code in ("invalid", "invalid_job_id", "bad_json"):
            return ConfigError(message, key=field)
        if code == "config_invalid":  # the message names the key and line already
            return ConfigError(
                f"the gateway (pid {self.pid}) refused the config and keeps the old one: {message}",
                file=file if isinstance(file, str) else None,
            )
        if code == "unauthorized":
            if self.token_env and not self.token:
                hint = (
                    f"this shell has no ${self.token_env} (server.token_env names it): export it "
                    "with the gateway's token"
                )
            elif self.token_env:
                hint = f"${self.token_env} in this shell is not the gateway's token"
            else:
                hint = (
                    "this home's config names no server.token_env; was the gateway started with "
                    "another --config?"
                )
            message = f"{message}; {hint}"
        return GatewayError(
            f"the gateway at {self.url} refused the request ({status} {code or 'error'}): "
            f"{message}",
            url=self.url,
            status=status,
            code=code,
        )
