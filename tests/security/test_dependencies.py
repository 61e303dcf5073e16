"""The pinned requirements have no known vulnerability (pip-audit against PyPI's advisory data).

Every requirement is pinned, so pip-audit checks exactly those versions without resolving
(``--no-deps --disable-pip``). Without its vulnerability data (no network) pip-audit marks each
dependency as skipped; the test then skips with that message instead of passing silently.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PIP_AUDIT = Path(sys.executable).with_name("pip-audit")
REQUIREMENTS = (ROOT / "layers/core/requirements.txt", ROOT / "requirements-dev.txt")


@dataclass
class Audit:
    audited: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # name -> why
    vulnerable: dict[str, list[str]] = field(default_factory=dict)  # "name==version" -> ids
    problem: str = ""  # pip-audit itself failed

    @property
    def unreachable(self) -> bool:
        return bool(self.problem) or (bool(self.skipped) and not self.audited)


def audit(*requirement_files: Path, timeout: float = 90) -> Audit:
    command = [str(PIP_AUDIT), "--no-deps", "--disable-pip", "--format", "json"]
    command += ["--progress-spinner", "off", "--timeout", "5"]
    for path in requirement_files:
        command += ["-r", str(path)]
    try:
        done = subprocess.run(  # noqa: S603 - our own pip-audit, fixed arguments
            command, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        return Audit(problem=f"pip-audit took more than {timeout:.0f} s")
    return read_report(done.stdout, done.stderr)


def read_report(stdout: str, stderr: str = "") -> Audit:
    """pip-audit's JSON report (``--format json``) as an ``Audit``."""
    try:
        report = json.loads(stdout)
    except json.JSONDecodeError:
        return Audit(problem=(stderr or stdout).strip()[-500:])
    result = Audit()
    for dependency in report.get("dependencies", []):
        name = dependency["name"]
        if "skip_reason" in dependency:
            result.skipped[name] = dependency["skip_reason"]
            continue
        result.audited.append(name)
        ids = [v["id"] for v in dependency.get("vulns", [])]
        if ids:
            result.vulnerable[f"{name}=={dependency.get('version')}"] = ids
    return result


def _skip_without_data(result: Audit) -> None:
    if result.unreachable:
        why = result.problem or next(iter(result.skipped.values()))
        pytest.skip(f"pip-audit cannot reach its vulnerability data (no network?): {why}")


def test_the_pinned_requirements_have_no_known_vulnerability() -> None:
    # Given the pinned runtime and development requirements; When pip-audit checks them
    result = audit(*REQUIREMENTS)
    _skip_without_data(result)
    # Then every one of them was audited and none has a known vulnerability
    assert result.skipped == {}
    assert result.vulnerable == {}


def test_the_audit_catches_a_known_vulnerable_pin(tmp_path: Path) -> None:
    # Given a requirements file pinning a release with published advisories
    planted = tmp_path / "requirements.txt"
    planted.write_text("requests==2.19.0\n")
    # When it is audited, Then the vulnerability is reported
    result = audit(planted)
    _skip_without_data(result)
    assert "requests==2.19.0" in result.vulnerable


def test_a_reported_vulnerability_is_read_as_one() -> None:
    # Given a pip-audit JSON report naming an advisory (works offline)
    report = {
        "dependencies": [
            {"name": "httpx", "version": "0.28.1", "vulns": []},
            {
                "name": "requests",
                "version": "2.19.0",
                "vulns": [{"id": "PYSEC-2018-28", "fix_versions": ["2.20.0"]}],
            },
        ],
        "fixes": [],
    }
    # When it is read, Then the vulnerable pin is reported and the audit counts as reachable
    result = read_report(json.dumps(report))
    assert result.vulnerable == {"requests==2.19.0": ["PYSEC-2018-28"]}
    assert not result.unreachable


def test_a_report_where_everything_was_skipped_means_no_data() -> None:
    skipped = {"name": "boto3", "skip_reason": "Dependency not found on PyPI"}
    assert read_report(json.dumps({"dependencies": [skipped]})).unreachable
    assert read_report("", "ConnectionError: offline").unreachable
