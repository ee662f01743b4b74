"""python -m ui: the business app on http://127.0.0.1:8501, on top of the proxy (UI_PROXY_URL, UI_API_KEY)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from pydantic import ValidationError

from ui.settings import UiSettings

APP = Path(__file__).with_name("app.py")


def main(argv: list[str] | None = None) -> int:
    """Check the settings, then hand over to `streamlit run`."""
    parser = argparse.ArgumentParser(prog="python -m ui", description=__doc__)
    parser.add_argument("--port", type=int, default=8501, help="port of the app (default 8501)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument(
        "--proxy-url", help="the scoring proxy (default: UI_PROXY_URL, else http://127.0.0.1:8000)"
    )
    args = parser.parse_args(argv)
    if args.proxy_url:
        os.environ["UI_PROXY_URL"] = args.proxy_url
    try:
        UiSettings()
    except ValidationError as exc:
        first = exc.errors()[0]
        print(f"error: UI_{str(first['loc'][0]).upper()}: {first['msg']}", file=sys.stderr)
        return 2
    if not 1 <= args.port <= 65535:
        print(f"error: --port: {args.port} is not a port", file=sys.stderr)
        return 2
    command = [
        sys.executable, "-m", "streamlit", "run", str(APP), "--server.headless=true",
        f"--server.port={args.port}", f"--server.address={args.host}", "--browser.gatherUsageStats=false",
        "--client.toolbarMode=viewer",
    ]  # fmt: skip
    os.execv(sys.executable, command)
    return 0  # Not reached: the process is now Streamlit's.


if __name__ == "__main__":
    sys.exit(main())
