"""A local Google People API (contacts, sync tokens, batches, groups) and Google OAuth 2.0."""

from sandbox.google.app import google_app
from sandbox.google.running import RunningGoogle, running_google_sandbox, start_google_sandbox
from sandbox.google.state import Faults, GoogleSandbox

__all__ = [
    "Faults",
    "GoogleSandbox",
    "RunningGoogle",
    "google_app",
    "running_google_sandbox",
    "start_google_sandbox",
]
