"""The proxy's HTTP API as the app uses it; every failure is an `ApiError` with a readable message."""

from __future__ import annotations

import time
from typing import Any

import httpx

from ui.settings import UiSettings

MESSAGES = {
    401: "The proxy refused the API key: set UI_API_KEY to a key from the proxy's API_KEYS.",
    403: "The key this app uses may not do this: give UI_API_KEY a key with the read and score scopes",
    404: "Not found",
    422: "The proxy could not use this input",
    503: "The scoring service is not available right now; try again in a moment",
}


class ApiError(Exception):
    """A request to the proxy failed; `message` is for people."""

    def __init__(self, status: int | None, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Proxy:
    """A small client of the scoring proxy."""

    def __init__(self, settings: UiSettings, transport: httpx.BaseTransport | None = None) -> None:
        headers = {"X-API-Key": settings.api_key.get_secret_value()} if settings.api_key else {}
        self._http = httpx.Client(
            base_url=settings.proxy_url,
            headers=headers,
            timeout=settings.timeout_seconds,
            transport=transport,
        )

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ApiError(None, f"Cannot reach the scoring service at {self._http.base_url}: {exc}") from exc

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        answer = self._send(method, path, **kwargs)
        if answer.status_code >= 400:
            try:
                detail = str(answer.json().get("message", ""))
            except ValueError:
                detail = answer.text[:200]
            general = MESSAGES.get(answer.status_code, f"The scoring service answered {answer.status_code}")
            message = general if answer.status_code == 401 else f"{general}: {detail}" if detail else general
            raise ApiError(answer.status_code, message)
        return answer

    def ready(self) -> dict[str, Any]:
        """`/ready`'s body, 503 included (it says why)."""
        body: dict[str, Any] = self._send("GET", "/ready").json()
        return body

    def card(self) -> str:
        """The served version's model card, in Markdown."""
        return self._call("GET", "/model/card", params={"format": "md"}).text

    def model(self) -> dict[str, Any]:
        """The served version's facts: labels, threshold, features, schema."""
        body: dict[str, Any] = self._call("GET", "/model").json()
        return body

    def by_id(self, entity_id: str, params: dict[str, Any] | None = None) -> tuple[dict[str, Any], str]:
        """Score a stored entity: its prediction and the request id."""
        body = {"params": params} if params else None
        answer = self._call("POST", f"/predict/by-id/{entity_id}", json=body)
        return answer.json()["predictions"][0], answer.headers["X-Request-ID"]

    def score(self, row: dict[str, Any], params: dict[str, Any] | None = None) -> tuple[dict[str, Any], str]:
        """Score one row: its prediction and the request id."""
        body: dict[str, Any] = {"dataframe_records": [row], **({"params": params} if params else {})}
        answer = self._call("POST", "/invocations", json=body)
        return answer.json()["predictions"][0], answer.headers["X-Request-ID"]

    def logged(self, request_id: str) -> dict[str, Any]:
        """One logged request with its rows (the inputs as sent included)."""
        body: dict[str, Any] = self._call("GET", f"/predictions/{request_id}").json()
        return body

    def waterfall(self, request_id: str, row: int = 0, wait_seconds: float = 10.0) -> bytes:
        """The SHAP waterfall PNG of a logged row, waiting for a fresh one to reach the log."""
        deadline = time.monotonic() + wait_seconds
        while True:
            try:
                return self._call(
                    "GET", f"/predictions/{request_id}/waterfall.png", params={"row": row}
                ).content
            except ApiError as exc:
                if exc.status != 404 or time.monotonic() > deadline:
                    raise
                time.sleep(0.3)

    def history(self, limit: int, model_version: int | None) -> list[dict[str, Any]]:
        """The latest logged predictions, newest first."""
        params: dict[str, Any] = {"limit": limit}
        if model_version is not None:
            params["model_version"] = model_version
        rows: list[dict[str, Any]] = self._call("GET", "/predictions", params=params).json()["predictions"]
        return rows

    def drift(self) -> dict[str, Any] | None:
        """The latest drift summary, or None when there is none yet."""
        return self._report("/drift")

    def challenger(self) -> dict[str, Any] | None:
        """The latest comparison of a challenger with the served version, or None when there is none yet."""
        return self._report("/challenger")

    def rollout(self) -> dict[str, Any] | None:
        """The rollout in progress with its figures, or None when there is none."""
        return self._report("/rollout")

    def _report(self, path: str) -> dict[str, Any] | None:
        try:
            body: dict[str, Any] = self._call("GET", path).json()
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise
        return body
