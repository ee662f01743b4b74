"""The online proxy in front of `mlflow models serve`: one request's way from key to answer and log.

`app` puts the `routes/` together over a `runtime` that holds the parts: API keys (`auth`), body
checks against the signature (`validation`, `checks`, `openapi`), natural batching of waiting
requests (`batching`), the backend processes (`backend`, `processes`) with their supervision and
registry following (`supervisor`), forwarding and MLflow error translation (`forwarder`,
`upstream`), shadow scoring of a challenger (`shadow`), the per-request pipeline (`scoring`) and
Prometheus metrics (`metrics`). It may import the shared modules, `documents` and `logstore`.
"""
