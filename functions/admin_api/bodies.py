"""What the admin API accepts: request bodies and the shapes of path and query parameters."""

from __future__ import annotations

from typing import Annotated, Literal

from aws_lambda_powertools.event_handler.openapi.params import Path
from contactsync.admin.sign_in import CardDavLogin
from contactsync.admin.views import AUDIT_ENTRY_ID_PATTERN, OWNER_ID_PATTERN
from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

ConnectionId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
CrmPersonId = Annotated[str, Field(min_length=1, max_length=18, pattern=r"^[0-9]+$")]
ProviderContactId = r"^[A-Za-z0-9_=+/.:@~-]+$"  # CardDAV ids are paths, with "@" at Fastmail
EntryId = Annotated[str, Path(max_length=40, pattern=AUDIT_ENTRY_ID_PATTERN)]
OwnerId = Annotated[str, Path(min_length=1, max_length=128, pattern=OWNER_ID_PATTERN)]
ProviderName = Annotated[str, Path(min_length=1, max_length=32)]


class NewConnection(BaseModel):
    """``microsoft`` and ``google`` answer with a sign-in URL; ``carddav`` (iCloud, Fastmail,
    Nextcloud, …) signs in at once with a username and an app-specific password, and the server
    URL or the account's email address to find the server from."""

    model_config = ConfigDict(extra="forbid")
    provider: Literal["microsoft", "google", "carddav"]
    server_url: str | None = Field(default=None, min_length=8, max_length=512)
    email: str | None = Field(
        default=None, min_length=3, max_length=320, pattern=r"^[^@\s]+@[^@\s]+$"
    )
    username: str | None = Field(default=None, min_length=1, max_length=320)
    password: SecretStr | None = Field(default=None, min_length=1, max_length=512)

    @model_validator(mode="after")
    def login_only_for_carddav(self) -> NewConnection:
        given = [f for f in ("server_url", "email", "username", "password") if getattr(self, f)]
        if self.provider != "carddav" and given:
            raise ValueError(f"{', '.join(given)}: only for provider carddav")
        if self.provider == "carddav":
            missing = [f for f in ("username", "password") if not getattr(self, f)]
            if not (self.server_url or self.email):
                missing.append("server_url (or email)")
            if missing:
                raise ValueError(f"a carddav connection needs {', '.join(missing)}")
        return self

    def login(self) -> CardDavLogin | None:
        if self.provider != "carddav":
            return None
        return CardDavLogin(
            username=self.username or "",
            password=self.password.get_secret_value() if self.password else "",
            server_url=self.server_url or "",
            email=self.email or "",
        )


class NewPassword(BaseModel):
    """Reconnecting a CardDAV account: the new app-specific password (and, if they changed,
    the username or server URL)."""

    model_config = ConfigDict(extra="forbid")
    password: SecretStr = Field(min_length=1, max_length=512)
    username: str | None = Field(default=None, min_length=1, max_length=320)
    server_url: str | None = Field(default=None, min_length=8, max_length=512)

    def login(self) -> CardDavLogin:
        return CardDavLogin(
            username=self.username or "",
            password=self.password.get_secret_value(),
            server_url=self.server_url or "",
        )


class ConnectionSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    folder_id: str | None = Field(default=None, min_length=1, max_length=512)
    direction: Literal["two_way", "to_crm", "to_provider"] | None = None
    conflict_policy: Literal["newest_wins", "crm_wins", "provider_wins"] | None = None
    phone_region: str | None = Field(default=None, min_length=2, max_length=2)
    visibility: Literal["owner", "group", "company"] | None = Field(
        default=None,
        description="Who sees the CRM persons the sync creates: the owner only, the owner's "
        "visibility group, or the entire company (unset: the CRM's default).",
    )


class NewGroup(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=100, pattern=r"\S")


class DuplicateMerge(BaseModel):
    model_config = ConfigDict(extra="forbid")
    keep: CrmPersonId
    merge: list[CrmPersonId] = Field(min_length=1, max_length=20)
