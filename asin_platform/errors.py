"""Errors that are the user's to fix.

``asin-platform`` prints a ``UserError`` as one line on stderr (``asin-platform: error: <message>``)
and exits with code 2; the traceback is shown only with ``--debug`` (or ``ASIN_PLATFORM_DEBUG=1``).
The message is that line: it says what is wrong and how to fix it, and never holds a secret.
"""

from __future__ import annotations


class UserError(Exception):
    """A mistake in the command line, the settings or the environment (not a bug): one line, exit 2."""
