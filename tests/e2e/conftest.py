"""pytest fixtures for the end-to-end tests (see hermod.py)."""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from hermod import Hermod  # noqa: E402


@pytest.fixture
def hermod():
    """A private Hermod installation; daemons stopped and checked for
    sanitizer reports at the end."""
    h = Hermod()
    try:
        yield h
    finally:
        reports = h.close()
    if reports:
        pytest.fail("sanitizer reports in daemon logs:\n" + "\n".join(reports))
