"""HTTP intake of Alertmanager notifications, policy evaluation, incident state, read API, CLI."""
