"""Print the local API's OpenAPI description: ``python -m hopline.api.openapi``.

``docs/openapi.json`` is this output; a test fails when the two differ, so
the published description always matches what daemons serve.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from hopline.api.app import create_app


def openapi_document() -> dict[str, Any]:
    """The OpenAPI document of the daemon API."""
    return create_app(None, "unused").openapi()


def render() -> str:
    """The document as it is kept in docs/openapi.json."""
    return json.dumps(openapi_document(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
