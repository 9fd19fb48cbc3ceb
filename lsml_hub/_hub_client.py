"""What every Hugging Face Hub call of the package shares: who is calling, commit ids, network errors."""

from __future__ import annotations

import importlib
import re

from huggingface_hub import errors as hf_errors
from huggingface_hub.errors import HfHubHTTPError

#: Sent with every Hub request (``library_name``), so the Hub can tell our downloads apart.
LIBRARY_NAME = "lsml-hub"
#: A full git commit id, the only revision that cannot move.
COMMIT_PATTERN = re.compile(r"[0-9a-f]{40}")


def _client_http_error() -> type[Exception]:
    # The base error of huggingface_hub's own HTTP client (httpx, or its fork httpx2 in huggingface_hub
    # 2.x): connection failures and timeouts that no HfHubHTTPError wraps are raised as its subclasses.
    client = importlib.import_module(hf_errors.Response.__module__.split(".")[0])
    return getattr(client, "HTTPError", OSError)


CLIENT_HTTP_ERROR = _client_http_error()

#: An HTTP error status from the Hub, or no answer at all (DNS, refused connection, TLS, timeout).
HUB_REQUEST_ERRORS: tuple[type[Exception], ...] = (HfHubHTTPError, CLIENT_HTTP_ERROR, OSError)
