"""A Streamlit app for the people who act on the scores; it talks only to the proxy's HTTP API."""
