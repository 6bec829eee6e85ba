"""A client profile directory: one device's identity and state.

Layout (the directory is created 0700; secrets are 0600)::

    PROFILE/
      identity.key      X25519 static + Ed25519 signing keys (PEM, 0600)
      profile.json      device id, pinned login server address and key
      certificate       the current certificate from the login server (0600)

The login server's public key is *pinned* here on first use (from
``--ls-key``); a later different key is refused rather than silently
replaced, so a profile cannot be moved to an impostor server by accident.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hopline.crypto.keys import IdentityKeys
from hopline.identity import CertificateBody, CertificateError, parse_certificate
from hopline.wire import Address, WireError

KEY_FILE, CONFIG_FILE, CERT_FILE = "identity.key", "profile.json", "certificate"


class ProfileError(Exception):
    """The profile or an argument about it is unusable; the message says why."""


def _decode_key_text(text: str) -> bytes | None:
    padded = text + "=" * (-len(text) % 4)
    decoders = (
        bytes.fromhex,
        lambda t: base64.b64decode(padded, validate=True),
        lambda t: base64.urlsafe_b64decode(padded),
    )
    for decoder in decoders:
        try:
            key = decoder(text)
        except (ValueError, binascii.Error):
            continue  # not this encoding; the next one may fit
        if len(key) == 32:
            return key
    return None


def parse_ls_key(text: str) -> bytes:
    """A login-server public key from base64 (as ``loginserver key`` prints) or hex."""
    key = _decode_key_text(text.strip())
    if key is None:
        raise ProfileError(f"not a login-server key (32 bytes in base64 or hex): {text[:50]!r}")
    return key


def format_ls_key(key: bytes) -> str:
    """The printable (base64) form of a login-server key."""
    return base64.b64encode(key).decode("ascii")


def parse_address(text: str, what: str = "address") -> Address:
    """HOST:PORT to an Address, as a ProfileError on bad text."""
    try:
        return Address.parse(text)
    except WireError as exc:
        raise ProfileError(f"bad {what} {text!r}: {exc}") from None


@dataclass
class Profile:
    """An opened profile directory."""

    path: Path
    keys: IdentityKeys
    device_id: bytes
    config: dict[str, Any]

    @classmethod
    def open(cls, path: Path, *, create: bool = True) -> Profile:
        """Open (and with ``create``, initialise) the profile at ``path``."""
        if not path.exists():
            if not create:
                raise ProfileError(f"no profile at {path}")
            path.mkdir(mode=0o700, parents=True)
        key_path = path / KEY_FILE
        if not key_path.exists():
            IdentityKeys.generate().save(key_path)
        keys = IdentityKeys.load(key_path)
        config = cls._read_config(path)
        if "device_id" not in config:
            config["device_id"] = secrets.token_hex(16)
        profile = cls(path, keys, bytes.fromhex(config["device_id"]), config)
        profile.save_config()
        return profile

    @staticmethod
    def _read_config(path: Path) -> dict[str, Any]:
        config_path = path / CONFIG_FILE
        if not config_path.exists():
            return {}
        try:
            loaded = json.loads(config_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ProfileError(f"unreadable {config_path}: {exc}") from None
        if not isinstance(loaded, dict):
            raise ProfileError(f"{config_path} is not a JSON object")
        return loaded

    def save_config(self) -> None:
        """Write profile.json atomically."""
        write_private(self.path / CONFIG_FILE, json.dumps(self.config, indent=2).encode())

    # ------------------------------------------------------------ login server

    def pin_login_server(self, address: Address | None, key: bytes | None) -> None:
        """Remember the login server; refuse a key different from the pinned one."""
        pinned = self.config.get("ls_key")
        if key is not None:
            if pinned is not None and parse_ls_key(pinned) != key:
                raise ProfileError(
                    "this profile is pinned to another login-server key; "
                    "use a new profile for another network"
                )
            self.config["ls_key"] = format_ls_key(key)
        if address is not None:
            self.config["login_server"] = str(address)
        self.save_config()

    @property
    def login_server(self) -> Address:
        """The pinned login server's address."""
        text = self.config.get("login_server")
        if not text:
            raise ProfileError("no login server known: give --login-server HOST:PORT")
        return parse_address(text, "login server address")

    @property
    def ls_key(self) -> bytes:
        """The pinned login server's public key."""
        text = self.config.get("ls_key")
        if not text:
            raise ProfileError("no login-server key known: give --ls-key KEY")
        return parse_ls_key(text)

    # ------------------------------------------------------------ certificate

    @property
    def certificate(self) -> bytes | None:
        """The stored certificate, if any."""
        path = self.path / CERT_FILE
        return path.read_bytes() if path.exists() else None

    def certificate_body(self) -> CertificateBody | None:
        """The stored certificate's body (not verified), if any."""
        data = self.certificate
        if data is None:
            return None
        try:
            return parse_certificate(data)[0]
        except CertificateError:
            return None

    def store_certificate(self, certificate: bytes, bootstrap: list[str] | None = None) -> None:
        """Keep a new certificate (and the bootstrap supernodes that came with it)."""
        write_private(self.path / CERT_FILE, certificate)
        if bootstrap is not None:
            self.config["bootstrap"] = bootstrap
            self.save_config()

    def forget_certificate(self) -> None:
        """Delete the stored certificate (logout)."""
        (self.path / CERT_FILE).unlink(missing_ok=True)


def write_private(path: Path, data: bytes) -> None:
    """Replace ``path`` atomically with ``data``, readable by the owner only (0600).

    The bytes go to a fresh temporary file beside ``path`` (created 0600, fsynced)
    which is then renamed over it, so a crash leaves either the old or the new file.
    """
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, path)
