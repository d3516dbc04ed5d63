"""Severity policy: YAML files kept in git, loaded, validated and evaluated per alert."""

from workers.policy.engine import Match, Policy, evaluate
from workers.policy.loader import PolicyError, load_policy

__all__ = ["Match", "Policy", "PolicyError", "evaluate", "load_policy"]
