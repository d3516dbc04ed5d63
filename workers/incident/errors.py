"""The one error hierarchy of the workers: permanent or transient.

Adapters wrap every vendor exception into one of these at their boundary, so a
job decides between "retry later" and "give up and say why" without knowing
which SDK raised.
"""

from __future__ import annotations


class ActionError(Exception):
    """Base of every error an action handler raises on purpose."""


class PermanentError(ActionError):
    """Retrying cannot help (bad request, forbidden, unknown incident).

    `status` is the vendor's HTTP status, when there was one (404: not there).
    """

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class TransientError(ActionError):
    """Worth retrying: rate limited, a 5xx, a connection reset.

    `retry_after` is the vendor's hint in seconds, when it gave one. `status` is the
    vendor's HTTP status when it answered (409, 429, 5xx: it refused the request);
    None when no answer came (a timeout), so the request may have taken effect.
    """

    def __init__(
        self, message: str, *, retry_after: float | None = None, status: int | None = None
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.status = status
