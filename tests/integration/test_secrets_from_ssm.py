"""Client secrets come from SSM Parameter Store SecureStrings at cold start (the AWS emulator's
SSM), never from the template or a plain environment variable."""

from __future__ import annotations

from contactsync.runtime.settings import Settings, with_secrets

from local.aws import LocalAws

PATH = "/contactsync/test"


def test_missing_client_secrets_are_read_from_securestrings(local_aws: LocalAws) -> None:
    # Given the secrets stored as SecureStrings under the stage's path
    ssm = local_aws.client("ssm")
    for name, value in (
        ("microsoft-client-secret", "ms-s3cret"),
        ("google-client-secret", "g-s3cret"),
    ):
        ssm.put_parameter(Name=f"{PATH}/{name}", Value=value, Type="SecureString", Overwrite=True)
    settings = Settings(secrets_path=PATH, pipedrive_client_secret="given-directly")
    # When a handler builds its settings at cold start
    loaded = with_secrets(settings, ssm)
    # Then the stored ones are read (decrypted), and one given directly is kept
    assert loaded.microsoft_client_secret == "ms-s3cret"
    assert loaded.google_client_secret == "g-s3cret"
    assert loaded.pipedrive_client_secret == "given-directly"
    # And none of them shows in the settings' text form (logs, tracebacks)
    assert "s3cret" not in repr(loaded) and "given-directly" not in repr(loaded)


def test_without_a_secrets_path_nothing_is_read(local_aws: LocalAws) -> None:
    # Given the local stack's way: secrets handed over directly, no path
    settings = Settings(microsoft_client_secret="direct")

    class NoSsm:
        def get_parameters(self, **_kw: object) -> dict[str, object]:
            raise AssertionError("SSM must not be called")

    # Then the settings are used as they are
    assert with_secrets(settings, NoSsm()).microsoft_client_secret == "direct"
