"""Policy tooling for people and CI: validate, test, explain, diff.

The policy itself (model, loader, engine, store) lives in workers/policy.
"""
