"""Where the command line's bearer token comes from: `--token`, the
environment, or a command run again each time the token is refused (e.g.
`gcloud auth print-access-token`)."""

from __future__ import annotations

import asyncio
import os
import shlex

from ..errors import AuthError
from ..http import TokenProvider

TOKEN_ENV = "COD_RETRIEVE_TOKEN"


class CommandToken:
    """A token provider that runs `command` (no shell) and takes its first
    line of output. The job calls it for the first token and again, once for
    all requests refused together, whenever the bucket refuses the token."""

    def __init__(self, command: str, timeout: float = 60.0) -> None:
        self.argv = shlex.split(command)
        if not self.argv:
            raise ValueError("--token-command is empty")
        self.timeout = timeout
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        try:
            proc = await asyncio.create_subprocess_exec(
                *self.argv, stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        except OSError as e:
            raise AuthError(f"token command {self.argv[0]!r} could not start: {e.strerror or e}", status=0) from None
        try:
            out, err = await asyncio.wait_for(proc.communicate(), self.timeout)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()
            raise AuthError(f"token command {self.argv[0]!r} gave no token within {self.timeout:.0f} s", status=0) from None
        if proc.returncode != 0:
            detail = err.decode(errors="replace").strip().splitlines()[-1:] or [""]
            raise AuthError(f"token command {self.argv[0]!r} failed (exit {proc.returncode}) {detail[0]}".rstrip(),
                            status=0)
        token = out.decode(errors="replace").strip().splitlines()[:1]
        if not token or not token[0].strip():
            raise AuthError(f"token command {self.argv[0]!r} printed no token", status=0)
        return token[0].strip()


def token_source(token: str | None, command: str | None,
                 environ: dict[str, str] | None = None) -> tuple[str | None, TokenProvider | None]:
    """(initial token, provider): `--token` first, then the environment; a
    token command is the provider either way (asked when a token is refused)."""
    env = os.environ if environ is None else environ
    initial = token or env.get(TOKEN_ENV) or None
    return initial, (CommandToken(command) if command else None)
