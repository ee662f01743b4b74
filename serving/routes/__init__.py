"""The proxy's routes, one module per concern; `serving.app` puts them together."""
