"""What people read about a decision or a model: printable decision records, model cards, waterfalls.

Each module renders from data the caller fetched (a logged prediction, a registered version), so
the proxy's routes and any other caller render the same page. It never imports the online proxy.
"""
