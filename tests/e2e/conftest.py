"""End-to-end fixtures: defined in fixtures.py so other test folders can import them the same way."""
from tests.e2e.fixtures import *  # noqa: F403
