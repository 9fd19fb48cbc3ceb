"""Push a verified init folder to the Hugging Face Hub."""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

import huggingface_hub
from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

from lsml_hub._hub_client import CLIENT_HTTP_ERROR, LIBRARY_NAME, hf_hub_init, repo_id_problem
from lsml_hub.errors import LsmlHubError, first_line
from lsml_hub.hub.config import CARD_FILE, INIT_FILES
from lsml_hub.hub.format import verify_init
from lsml_hub.version import __version__

logger = logging.getLogger(__name__)


class PushError(LsmlHubError):
    """An init cannot be pushed: no token, a bad repo id, offline, the Hub unreachable or refusing the request."""




@dataclass(frozen=True)
class PushResult:
    """Where a push landed.

    Args:
        repo_id: The repo, as the Hub names it (owner filled in).
        revision: Branch the commit went to (``None``: the default branch).
        commit_oid: The commit's id.
        commit_url: Link to the commit.
        tag: Tag created on the commit, if any.
    """

    repo_id: str
    revision: str | None
    commit_oid: str
    commit_url: str
    tag: str | None = None

    @property
    def init(self) -> str:
        """The ``hf-hub:`` string that loads exactly this commit."""
        return hf_hub_init(self.repo_id, self.commit_oid)


def push_to_hub(
    init_dir: str | os.PathLike,
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    commit_message: str | None = None,
    token: str | None = None,
    tag: str | None = None,
) -> PushResult:
    """Upload an init folder's three files to ``repo_id`` (created if missing), optionally tagging the commit.

    Nothing touches the network until the folder is verified (files present, sha256 matching) and a
    token is found (``token``, then ``HF_TOKEN``, then ``hf auth login``). The token is never logged.

    Args:
        init_dir: An init folder (``save_init`` or ``lsml-hub publish`` output).
        repo_id: ``owner/name`` on the Hub.
        private: Create the repo as private (an existing repo keeps its visibility).
        revision: Branch to commit to; created from the default branch if missing.
        commit_message: Defaults to one naming the architecture and algorithm.
        token: Hugging Face token; by default the environment's or the login's.
        tag: Tag to create on the new commit (``"v1"``), so loaders can pin ``@v1``.

    Returns:
        The repo, commit and tag that were written.

    Raises:
        InitError: The folder is not a valid init (missing file, sha256 mismatch).
        PushError: A malformed repo id or tag, offline mode (``HF_HUB_OFFLINE``), no token, a tag the
            repo has already, the Hub cannot be reached, or the Hub refused a request (checked in
            this order; all before any upload but the last two).

    Example:
        >>> # needs the Hugging Face Hub and a token
        >>> push_to_hub("runs/demo/inits/cts", "me/test_resnet.cts_demo", tag="v1")  # doctest: +SKIP
        PushResult(repo_id='me/test_resnet.cts_demo', ...)
    """
    config = verify_init(init_dir)
    problem = repo_id_problem(repo_id, owner_required=False)
    if problem:
        raise PushError(problem)
    if tag is not None and not _TAG.fullmatch(tag):
        raise PushError(f"bad tag {tag!r}: use letters, digits, '.', '_', '-' or '/', e.g. v1")
    if huggingface_hub.constants.is_offline_mode():
        raise PushError(f"cannot push to {repo_id!r}: huggingface_hub is in offline mode (HF_HUB_OFFLINE is "
                        "set); unset HF_HUB_OFFLINE and retry")
    token = token or huggingface_hub.get_token()
    if not token:
        # Worded for both callers: the CLI has no --token flag (tokens stay out of shell history).
        raise PushError("no Hugging Face token: set HF_TOKEN or run `hf auth login`, then retry")
    _warn_if_card_names_another_repo(Path(init_dir), repo_id)
    message = commit_message or (f"Upload {config.architecture} init ({config.algorithm_name}) "
                                 f"with lsml-hub {__version__}")
    api = huggingface_hub.HfApi(token=token, library_name=LIBRARY_NAME, library_version=__version__)
    try:
        return _upload(api, Path(init_dir), repo_id, private, revision, message, tag)
    except OfflineModeIsEnabled:
        raise PushError(f"cannot push to {repo_id!r}: huggingface_hub is in offline mode (HF_HUB_OFFLINE is "
                        "set); unset HF_HUB_OFFLINE and retry") from None
    except HfHubHTTPError as err:  # the Hub answered, and refused
        raise PushError(f"push to {repo_id!r} failed: {first_line(err)}") from None
    except (CLIENT_HTTP_ERROR, OSError) as err:  # no answer: DNS, refused connection, TLS, timeout
        raise PushError(f"cannot push to {repo_id!r}: the Hugging Face Hub cannot be reached ({first_line(err)}); "
                        "check the network connection (and HF_ENDPOINT or proxy settings) and retry") from None


# A git tag name the Hub takes: no spaces or '..', not starting or ending with '/' or '.'.
_TAG = re.compile(r"(?!.*\.\.)[A-Za-z0-9_][\w.\-/]*(?<![/.])")


def _upload(api: huggingface_hub.HfApi, init_dir: Path, repo_id: str, private: bool, revision: str | None,
            message: str, tag: str | None) -> PushResult:
    repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
    if tag and tag in {ref.name for ref in api.list_repo_refs(repo_id).tags}:
        # Tags are made after the upload: refuse a taken one before anything is committed.
        raise PushError(f"{repo_id} already has a tag {tag!r}; choose another tag (nothing was uploaded)")
    if revision and not revision.startswith("refs/"):
        api.create_branch(repo_id, branch=revision, exist_ok=True)
    commit = api.upload_folder(
        repo_id=repo_id,
        folder_path=init_dir,
        revision=revision,
        commit_message=message,
        allow_patterns=list(INIT_FILES),  # only the init: no stray files from the folder
    )
    if tag:
        api.create_tag(repo_id, tag=tag, revision=commit.oid, tag_message=message)
    logger.info("pushed %s to %s (%s)", init_dir, repo_id, commit.commit_url)
    return PushResult(repo_id, revision, commit.oid, commit.commit_url, tag)


def _warn_if_card_names_another_repo(init_dir: Path, repo_id: str) -> None:
    card = (init_dir / CARD_FILE).read_text(encoding="utf-8")
    if f"hf-hub:{repo_id}" not in card:
        logger.warning("%s's usage snippets do not name %s; rebuild it with `lsml-hub publish RUN_DIR "
                       "--repo-id %s` before pushing, or edit it", CARD_FILE, repo_id, repo_id)
