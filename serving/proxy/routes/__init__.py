"""The proxy's routes, one module per concern; `serving.proxy.app` puts them together."""
