"""Open Power Quality: power-quality monitoring from wall-outlet boxes to a web application."""

__version__ = "0.1.0"
