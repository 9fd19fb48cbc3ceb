"""What every Hugging Face Hub call of the package shares: who is calling, commit ids, network errors."""

from __future__ import annotations

import importlib
import re
from types import ModuleType

from huggingface_hub import errors as hf_errors
from huggingface_hub.errors import HfHubHTTPError, HFValidationError
from huggingface_hub.utils import validate_repo_id

#: Sent with every Hub request (``library_name``), so the Hub can tell our downloads apart.
LIBRARY_NAME = "lsml-hub"
#: A full git commit id, the only revision that cannot move.
COMMIT_PATTERN = re.compile(r"[0-9a-f]{40}")


def http_client_module() -> ModuleType:
    """huggingface_hub's own HTTP client module (httpx, or its fork httpx2 in huggingface_hub 2.x)."""
    return importlib.import_module(hf_errors.Response.__module__.split(".")[0])


#: The client's base error: connection failures and timeouts that no HfHubHTTPError wraps.
CLIENT_HTTP_ERROR: type[Exception] = getattr(http_client_module(), "HTTPError", OSError)

#: An HTTP error status from the Hub, or no answer at all (DNS, refused connection, TLS, timeout).
HUB_REQUEST_ERRORS: tuple[type[Exception], ...] = (HfHubHTTPError, CLIENT_HTTP_ERROR, OSError)


def hf_hub_init(repo_id: str, revision: str | None = None) -> str:
    """The init string that loads ``repo_id`` at ``revision`` (the default branch when None).

    Example:
        >>> hf_hub_init("me/resnet20_cifar.cts"), hf_hub_init("me/resnet20_cifar.cts", "v1")
        ('hf-hub:me/resnet20_cifar.cts', 'hf-hub:me/resnet20_cifar.cts@v1')
    """
    return f"hf-hub:{repo_id}" + (f"@{revision}" if revision else "")


def validation_reason(err: HFValidationError) -> str:
    """huggingface_hub's reason a repo id is invalid, without its advice for other repo types.

    Example:
        >>> try:
        ...     validate_repo_id("a/b/c")
        ... except HFValidationError as err:
        ...     validation_reason(err)
        "Repo id must be in the form 'repo_name' or 'namespace/repo_name': 'a/b/c'"
    """
    return str(err).splitlines()[0].replace(" Use `repo_type` argument if needed.", "").rstrip(".")


def repo_id_problem(repo_id: str, *, owner_required: bool = True) -> str | None:
    """Why ``repo_id`` is not a Hub model id (``owner/name``; ``name`` alone if not ``owner_required``), or None.

    Example:
        >>> repo_id_problem("me/resnet20_cifar.cts") is None
        True
        >>> repo_id_problem("resnet20_cifar")
        "bad Hub id 'resnet20_cifar': use OWNER/NAME, e.g. me/resnet20_cifar.cts"
    """
    use = "use OWNER/NAME, e.g. me/resnet20_cifar.cts"
    try:
        validate_repo_id(repo_id)
    except HFValidationError as err:
        return f"bad Hub id {repo_id!r}: {validation_reason(err)}; {use}"
    if owner_required and repo_id.count("/") != 1:
        return f"bad Hub id {repo_id!r}: {use}"
    return None
