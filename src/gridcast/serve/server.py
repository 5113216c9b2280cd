"""Running the service: safe-by-default binding, the token file, and uvicorn."""
from __future__ import annotations

import ipaddress
import os

from gridcast.errors import GridcastError, InputError
from gridcast.safe_files import read_regular
from gridcast.serve.limits import Limits

MAX_TOKEN_FILE_BYTES = 64 << 10
LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


def is_loopback(host: str) -> bool:
    """Whether `host` only listens on this machine.

    >>> is_loopback("127.0.0.1"), is_loopback("::1"), is_loopback("localhost"), is_loopback("0.0.0.0")
    (True, True, True, False)
    """
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None) -> None:
    """Refuse to listen beyond loopback without a token (anyone on the network could use it).

    Raises:
        InputError: a non-loopback `host` and no token.
    """
    if not is_loopback(host) and token is None:
        raise InputError(f"--host {host}: listening beyond this machine needs --token-file FILE "
                         f"(every /v1 request then needs Authorization: Bearer <token>)")


def read_token(path: str | os.PathLike | None) -> str | None:
    """The token of `--token-file` (its first line, stripped), or None without the flag.

    Raises:
        InputError: the file is missing, unreadable, empty or shorter than 16 characters.
    """
    if path is None:
        return None
    # a regular file of at most 64 KiB: a FIFO would hang the start, /dev/zero fill the memory; the
    # operator names it, so symlinks are followed (secrets mounted by an orchestrator are symlinks)
    resolved = os.path.realpath(path)
    try:
        text = read_regular(resolved, MAX_TOKEN_FILE_BYTES, what="token file").decode("utf-8")
    except InputError as exc:
        reason = str(exc).removeprefix(f"{resolved}: ")
        raise InputError(f"--token-file {path}: cannot be read ({reason})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"--token-file {path}: cannot be read ({getattr(exc, 'strerror', None) or exc})") from None
    token = text.strip().splitlines()[0].strip() if text.strip() else ""
    if len(token) < 16:
        raise InputError(f"--token-file {path}: the token must be at least 16 characters (got {len(token)})")
    return token


def serve(specs: list[str], host: str = "127.0.0.1", port: int = 8000, token_file: str | None = None,
          state_dir: str | None = None, limits: Limits = Limits(), log_level: str = "warning") -> None:
    """Load the models of `specs` and serve them until SIGINT/SIGTERM (live tracks saved on the way out
    with `state_dir`)."""
    import uvicorn

    from gridcast.serve.app import create_app
    from gridcast.serve.clean_exit import CleanExitServer
    from gridcast.serve.registry import load_models

    token = read_token(token_file)
    check_bind(host, token)
    if not 0 <= port <= 65535:
        raise InputError(f"--port {port}: must be within [0, 65535]")
    app = create_app(load_models(specs), limits, token=token, state_dir=state_dir)
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=False, lifespan="on")
    CleanExitServer(config).run()
    if app.state.save_failed:
        raise StateSaveError(f"--state-dir {state_dir}: live tracks could not be saved at shutdown (see above)")


class StateSaveError(GridcastError):
    """The shutdown could not write the live tracks: exit 1, not the clean 0 (nor a usage error's 2)."""

    exit_code = 1
