"""What a CardDAV login must hold before we call any server: an https URL naming a public host,
and, in the API body, a username, a password and a server URL or an email."""

from __future__ import annotations

import pytest
from contactsync.runtime.sides import carddav_url
from pydantic import ValidationError

from functions.admin_api.bodies import NewConnection, NewPassword


@pytest.mark.parametrize(
    "url",
    [
        "https://contacts.icloud.com",
        "https://carddav.fastmail.com/dav/principals/user/ada@fastmail.com/",
        "https://cloud.example.org/remote.php/dav",
    ],
)
def test_public_https_servers_are_accepted(url: str) -> None:
    assert carddav_url(f"  {url} ", allow_http=False) == url


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://contacts.example.org", "https://"),
        ("ftp://contacts.example.org", "https://"),
        ("https://", "name a host"),
        ("https://ada:secret@contacts.example.org", "no password"),
        ("https://127.0.0.1:5232", "public server"),
        ("https://169.254.169.254/latest", "public server"),
        ("https://10.0.0.8", "public server"),
        ("https://[::1]/", "public server"),
    ],
)
def test_other_urls_are_refused_with_what_to_fix(url: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        carddav_url(url, allow_http=False)


def test_the_local_stack_may_use_plain_http_on_loopback() -> None:
    assert carddav_url("http://127.0.0.1:5232", allow_http=True) == "http://127.0.0.1:5232"


def test_a_carddav_connection_needs_a_login_and_a_server() -> None:
    with pytest.raises(ValidationError, match="needs password, server_url"):
        NewConnection.model_validate({"provider": "carddav", "username": "ada"})
    ok = NewConnection.model_validate(
        {"provider": "carddav", "email": "ada@icloud.com", "username": "ada", "password": "pw"}
    )
    login = ok.login()
    assert login is not None and login.password == "pw" and login.email == "ada@icloud.com"
    assert "pw" not in repr(ok) and "pw" not in repr(login)


def test_oauth_providers_take_no_login() -> None:
    with pytest.raises(ValidationError, match="only for provider carddav"):
        NewConnection.model_validate({"provider": "google", "password": "pw"})
    assert NewConnection.model_validate({"provider": "google"}).login() is None


def test_a_reconnect_body_is_the_new_password() -> None:
    assert NewPassword.model_validate({"password": "new"}).login().password == "new"
    with pytest.raises(ValidationError):
        NewPassword.model_validate({})
