"""One module per external service; each keeps that service's quirks to itself."""
