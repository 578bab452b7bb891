"""hosting-automator: turns "DNS is ready" rows into live HTTPS sites with Matomo tracking."""

__version__ = "0.1.0"
