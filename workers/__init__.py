"""RQ jobs that carry out incident actions, and the incident timeline they write.

Nothing here imports Flask: workers run without the HTTP layer.
"""
