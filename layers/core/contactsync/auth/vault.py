"""The token vault: envelope encryption of OAuth tokens before they touch DynamoDB.

Each ``seal`` asks KMS for a fresh AES-256 data key (GenerateDataKey), encrypts with AES-256-GCM
and keeps only the KMS-encrypted copy of the key next to the ciphertext. ``open`` has KMS decrypt
the data key. The *encryption context* (e.g. ``{"connection_id": ..., "purpose": "provider"}``)
is bound both in KMS and as GCM associated data, so a blob copied onto another item will not open.

Blob layout (version 1)::

    0x01 | len(encrypted key): 2 bytes big-endian | encrypted key | nonce: 12 bytes | ciphertext+tag

The vault takes a boto3 KMS client from its caller and holds no global state. It never logs.
"""

from __future__ import annotations

import json
import os
import struct
from typing import Any

from botocore.exceptions import ClientError
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

VERSION = 1
NONCE_BYTES = 12
_HEADER = struct.Struct(">BH")  # version, encrypted data key length


class VaultError(Exception):
    """A blob that cannot be opened: tampered, wrong context, unknown version or key."""


def _associated_data(version: int, context: dict[str, str]) -> bytes:
    canonical = json.dumps(context, sort_keys=True, separators=(",", ":"))
    return bytes([version]) + canonical.encode()


class TokenVault:
    """Seals and opens secrets with a KMS key (``key_id``: key id, ARN or alias)."""

    def __init__(self, kms_client: Any, key_id: str) -> None:
        self._kms = kms_client
        self._key_id = key_id

    def seal(self, plaintext: bytes, context: dict[str, str]) -> bytes:
        """Encrypt ``plaintext`` under a fresh data key bound to ``context``."""
        data_key = self._kms.generate_data_key(
            KeyId=self._key_id, KeySpec="AES_256", EncryptionContext=context
        )
        encrypted_key: bytes = data_key["CiphertextBlob"]
        nonce = os.urandom(NONCE_BYTES)
        ciphertext = AESGCM(data_key["Plaintext"]).encrypt(
            nonce, plaintext, _associated_data(VERSION, context)
        )
        header = _HEADER.pack(VERSION, len(encrypted_key))
        return header + encrypted_key + nonce + ciphertext

    def open(self, blob: bytes, context: dict[str, str]) -> bytes:
        """Decrypt a sealed blob; the ``context`` must be the one it was sealed with."""
        if len(blob) < _HEADER.size:
            raise VaultError("not a sealed blob")
        version, key_length = _HEADER.unpack_from(blob)
        if version != VERSION:
            raise VaultError(f"unknown blob version {version}")
        start = _HEADER.size
        encrypted_key = blob[start : start + key_length]
        nonce = blob[start + key_length : start + key_length + NONCE_BYTES]
        ciphertext = blob[start + key_length + NONCE_BYTES :]
        if len(encrypted_key) != key_length or len(nonce) != NONCE_BYTES or not ciphertext:
            raise VaultError("truncated blob")
        try:
            data_key = self._kms.decrypt(
                CiphertextBlob=encrypted_key, KeyId=self._key_id, EncryptionContext=context
            )["Plaintext"]
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            raise VaultError(f"KMS refused the data key ({code})") from error
        try:
            plaintext: bytes = AESGCM(data_key).decrypt(
                nonce, ciphertext, _associated_data(version, context)
            )
        except InvalidTag as error:
            raise VaultError("blob does not open with this context") from error
        return plaintext

    def seal_json(self, data: dict[str, Any], context: dict[str, str]) -> bytes:
        """``seal`` for a JSON-ready dict (e.g. a token response)."""
        return self.seal(json.dumps(data, separators=(",", ":")).encode(), context)

    def open_json(self, blob: bytes, context: dict[str, str]) -> dict[str, Any]:
        data = json.loads(self.open(blob, context))
        if not isinstance(data, dict):
            raise VaultError("sealed value is not a JSON object")
        return data
