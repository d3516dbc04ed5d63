"""The policy set in force: loaded whole, swapped whole.

Readers take `store.current` once per notification, so a notification is always
evaluated against one complete set.
"""

from __future__ import annotations

from pathlib import Path

from webhook.policy.engine import Policy
from webhook.policy.loader import load_policy


class PolicyStore:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.current: Policy = load_policy(directory)

    def get(self) -> Policy:
        return self.current
