"""WSGI entry point for gunicorn: the app built from the environment."""

from __future__ import annotations

import logging
import os

from webhook.app import create_app
from workers.config import Settings

settings = Settings.from_env(os.environ)
logging.basicConfig(
    level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
)
app = create_app(settings)
