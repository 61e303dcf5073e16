"""Write the admin API's OpenAPI document to ``functions/admin_api/openapi.json``.

The document is generated from the routes and models in ``app.py``; the committed copy is what
API clients and reviewers read, and a test fails when it drifts from the code. Regenerate with
``python -m functions.admin_api.openapi`` after changing a route.
"""

from __future__ import annotations

import json
from pathlib import Path

from functions.admin_api.app import openapi_json

DOCUMENT = Path(__file__).with_name("openapi.json")


def render() -> str:
    """The document as committed: indented, keys in a stable order, one newline at the end."""
    return json.dumps(json.loads(openapi_json()), indent=2, sort_keys=True) + "\n"


def main() -> None:
    DOCUMENT.write_text(render(), encoding="utf-8")
    print(f"wrote {DOCUMENT}")


if __name__ == "__main__":
    main()
