"""The HTTP ceiling: a bare Flask app under gunicorn with `alertpilot serve`'s settings.

Both the gunicorn config (`--config python:tests.bench.bare`) and the app
(`tests.bench.bare:app`). The settings are copied from webhook/gunicorn_conf.py
(every plain value: worker class, access log, timeouts, keep-alive, preload...),
not its hooks, which start alertpilot's policy watchers; workers and threads come
on the command line, as `serve` passes them (tests/bench/http_intake.py).
"""

from __future__ import annotations

from typing import Any

from tests.bench.intake import bare_flask
from webhook import gunicorn_conf as _served


def _plain(value: Any) -> bool:
    return isinstance(value, str | int | float | bool | list | tuple | dict)


globals().update(
    {
        name: value
        for name, value in vars(_served).items()
        if not name.startswith("_") and name != "OWNED_METRICS_DIR" and _plain(value)
    }
)

app = bare_flask()
