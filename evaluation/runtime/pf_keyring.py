"""A file keyring for headless machines, so promptflow can store connection secrets.

promptflow encrypts connection secrets with a key it keeps in the system keyring; CI machines and
containers have none (``StoreConnectionEncryptionKeyError``). This backend keeps entries in one
JSON file, mode 0600, under ``$PF_HOME_DIRECTORY`` or ``~/.promptflow`` — the same protection as
``keyrings.alt``'s plaintext keyring, without the extra dependency. Select it with::

    export PYTHON_KEYRING_BACKEND=evaluation.runtime.pf_keyring.FileKeyring

``genaiops flow connections`` and the promptflow runner set it when no other keyring works.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from keyring.backend import KeyringBackend
from keyring.errors import PasswordDeleteError

__all__ = ["BACKEND", "FileKeyring"]

BACKEND = "evaluation.runtime.pf_keyring.FileKeyring"


def _path() -> Path:
    root = os.environ.get("PF_HOME_DIRECTORY") or str(Path.home() / ".promptflow")
    return Path(root) / "genaiops-keyring.json"


class FileKeyring(KeyringBackend):
    """Entries ``{service: {username: secret}}`` in one private JSON file."""

    priority = 0.1  # below any real keyring

    def _load(self) -> dict[str, dict[str, str]]:
        p = _path()
        if not p.exists():
            return {}
        data = json.loads(p.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}

    def _save(self, data: dict[str, dict[str, str]]) -> None:
        p = _path()
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f)
        os.replace(tmp, p)

    def get_password(self, service: str, username: str) -> str | None:
        return self._load().get(service, {}).get(username)

    def set_password(self, service: str, username: str, password: str) -> None:
        data = self._load()
        data.setdefault(service, {})[username] = password
        self._save(data)

    def delete_password(self, service: str, username: str) -> None:
        data = self._load()
        if username not in data.get(service, {}):
            raise PasswordDeleteError(f"no secret for {service}/{username}")
        del data[service][username]
        self._save(data)
