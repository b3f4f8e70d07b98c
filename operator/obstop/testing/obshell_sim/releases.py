"""What differs between obshell releases, as the simulator reproduces it (README.md#obshell-releases-the-simulator-reproduces;
error forms ob/agent/errors/errorcode.go, ob/agent/api/common/middleware.go, auth ob/agent/api/common/middleware.go Verify, obshell-sdk-python auth/password.py, stop checks ob/agent/executor/ob/stop.go CheckStopObParam).

A `Release` is built from a version string by comparing four integers against the thresholds of README.md#obshell-releases-the-simulator-reproduces, so any
version from 4.2.2.0 up works, not only the named profiles of `KNOWN_RELEASES`. Release attribution follows the
`VERSION=` bumps of obshell's `Makefile.common` (README.md#obshell-releases-the-simulator-reproduces): 4.2.4.0 5b035c9, 4.2.5.0 ba0e8d1, 4.2.6.0 737982a,
4.3.0.0 32187ba, 4.3.1.0 58d96f3, 4.4.1.0 6bfea90, 4.4.2.0 d7ec681, 4.5.0.0 61ee147.

    release = Release.parse("4.4.1")          # or "4.4.1.0", "4.4.1.0-100000012025061012"
    release.version, release.status_version   # "4.4.1.0", "4.4.1.0-100000012025061012"
"""

from __future__ import annotations

import re
from dataclasses import dataclass

Version = tuple[int, int, int, int]

KNOWN_RELEASES: tuple[str, ...] = (
    "4.2.2.0",  # inferred from the SDKs only: 4.2.2 is not in obshell's public history (obshell-sdk-python auth/password.py, README.md#obshell-releases-the-simulator-reproduces)
    "4.2.3.0",
    "4.2.6.0",
    "4.3.0.0",
    "4.3.1.0",
    "4.4.1.0",
    "4.4.2.0",
    "4.5.0.0",
)
NEWEST = KNOWN_RELEASES[-1]
OLDEST: Version = (4, 2, 2, 0)
# The `<release>` part of `/api/v1/status` `version` when none is given (obshell's RELEASE build variable).
DEFAULT_BUILD = "100000012025061012"

# Thresholds of README.md#obshell-releases-the-simulator-reproduces: the first release that has the behaviour.
_AUTH_V2: Version = (4, 2, 3, 0)  # 424f28a "v4.2.3": X-OCS-Header; 4.2.2.0 spoke auth v1 only (SDK)
_VERIFICATION_FAILED: Version = (4, 2, 4, 0)  # en.json err.unauthorized gets a text @5b035c9
_INFO_OB_VERSION: Version = (4, 2, 4, 0)  # meta/agent.go AgentStatus.obVersion @5b035c9
_SUPPORTED_AUTH: Version = (4, 2, 5, 0)  # commit 3738625 → ba0e8d1
_AGENT_HEADER: Version = (4, 2, 6, 0)  # commit 43dd332 → 737982a (also isObproxyAgent/security on /info)
_URI_FIRST: Version = (4, 2, 6, 0)  # middleware.go Verify @737982a: Uri before Ts/password
_VERIFICATION_DETAIL: Version = (4, 2, 6, 0)  # en.json "Verification failed: %v" @737982a
_DAG_HISTORY: Version = (4, 3, 0, 0)  # commits 0e32aa5, a327cd9 → 32187ba (also architecture on /info)
_ERR_CODES: Version = (4, 3, 1, 0)  # commit 43a4c2b → 58d96f3: string errCode
_STRICT_STOP: Version = (4, 4, 1, 0)  # commit 6163196 → 6bfea90: stop.go CheckStopObParam
# commit 319e3e6 → d7ec681: lib/crypto/rsa.go KEY_SIZE 1024, and code 1 on DecryptFailed
_KEY_1024: Version = (4, 4, 2, 0)

_VERSION_RE = re.compile(r"^(\d+)\.(\d+)\.(\d+)(?:\.(\d+))?(?:-([0-9A-Za-z._]+))?$")


def parse_version(text: str) -> tuple[Version, str | None]:
    """`4.4.1`, `4.4.1.0` or `4.4.1.0-<release>` → ((4, 4, 1, 0), "<release>" or None)."""
    match = _VERSION_RE.match(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise ValueError(
            f"obshell version {text!r} is not of the form X.Y.Z[.W][-RELEASE]; "
            f"known profiles: {', '.join(KNOWN_RELEASES)}"
        )
    major, minor, patch, build_no, release = match.groups()
    return (int(major), int(minor), int(patch), int(build_no or 0)), release


@dataclass(frozen=True)
class Release:
    """One obshell release's observable behaviour. Build it with `Release.parse(text)`."""

    numbers: Version
    build: str
    """The `<release>` part of `/api/v1/status` `version` (obshell's RELEASE build variable)."""
    auth_v1_only: bool
    """obshell-sdk-python auth/password.py, README.md#obshell-releases-the-simulator-reproduces: 4.2.2.0 speaks only auth v1 (`X-OCS-Auth`, one RSA block of
    {"password","ts"}, plaintext body). Inferred from obshell-sdk-python auth/password.py PasswordAuthMethodV1: the 4.2.2
    server is not in public history. An `X-OCS-Header` is unknown to it (401 10008 on protected routes)."""
    supported_auth: bool
    """README.md#obshell-releases-the-simulator-reproduces: `/api/v1/info` `supportedAuth: ["v2"]` from 4.2.5.0 (3738625, meta/agent.go)."""
    agent_header: bool
    """README.md#obshell-releases-the-simulator-reproduces: `X-OCS-Agent-Header` honoured from 4.2.6.0 (43dd332); ignored before."""
    uri_checked_first: bool
    """README.md#obshell-releases-the-simulator-reproduces: Uri checked before Ts/password from 4.2.6.0 (middleware.go Verify
    @737982a); 4.2.3.0-4.2.5.x check Ts/password first (@424f28a, @ba0e8d1)."""
    unauthorized_message: str
    """obshell-sdk-python auth/password.py, README.md#obshell-releases-the-simulator-reproduces: the 401 10008 message before 4.3.1.0:
    "err.unauthorized" (4.2.3.x, i18n key missing), "Verification failed" (4.2.4-4.2.5),
    "Verification failed: %s" (4.2.6-4.3.0; agent/assets/i18n/error/en.json). Empty from 4.3.1.0."""
    err_codes: bool
    """ob/agent/errors/errorcode.go, README.md#obshell-releases-the-simulator-reproduces: `{code?, errCode, message}` from 4.3.1.0 (43a4c2b); before,
    `{code, message}` with the old numeric codes (lib/http/response.go ApiError @32187ba)."""
    decrypt_failed_code: int
    """ob/agent/api/common/middleware.go, README.md#obshell-releases-the-simulator-reproduces: the `code` sent with errCode `...Header.DecryptFailed`:
    1 from 4.4.2.0 (319e3e6), none (0) in 4.3.1.0-4.4.1.x. Before 4.3.1.0 it is a plain 10008."""
    dag_history_routes: bool
    """ob/agent/api/task_handler.go, README.md#obshell-releases-the-simulator-reproduces: present from 4.3.0.0 (0e32aa5, task_handler.go);
    before, the unknown-route answer."""
    strict_stop_checks: bool
    """ob/agent/executor/ob/stop.go CheckStopObParam, README.md#obshell-releases-the-simulator-reproduces: from 4.4.1.0 (6163196, executor/ob/stop.go CheckStopObParam) ZONE needs
    obState 3 even with force, and immediate SERVER/ZONE get the one-zone, other-stop and majority checks."""
    zone_stop_routes: bool
    """§5, §7 row "per-zone stop": `POST /api/v1/ob/zone/{zone}/stop` and `/stop/check` from 4.4.1.0 (6163196,
    api/obcluster_handler.go); before, the unknown-route answer."""
    dag_id_must_round_trip: bool
    """§4.5, §7 row "GET DAG errors": from 4.2.6.0 (43dd332, executor/task/dag.go) a DAG found by the number of an
    id that does not re-encode to that id (leading zeros in its number) is 404 `dag id not match`; before, the
    DAG of that number is served."""
    stop_sql_skips_missing_observer: bool
    """§3.4 node 6, §7 row "`Execute stop sql` with no local observer process": from 4.3.1.0 (43a4c2b,
    executor/ob/stop.go ExecStopSqlTask) the node does nothing when the receiving agent's observer process is gone;
    before, it failed with `check observer process exist: false, <nil>,` and passed the sub-DAGs (@32187ba)."""
    key_bits: int
    """ob/agent/lib/crypto/rsa.go, README.md#obshell-releases-the-simulator-reproduces: 512-bit before 4.4.2.0, 1024-bit from it (319e3e6, lib/crypto/rsa.go KEY_SIZE)."""
    info_ob_version: bool
    """ob/agent/meta/agent.go: `/api/v1/info` `obVersion` from 4.2.4.0 (meta/agent.go AgentStatus)."""
    info_security: bool
    """ob/agent/meta/agent.go: `/api/v1/info` `isObproxyAgent` and `security` from 4.2.6.0."""
    info_architecture: bool
    """ob/agent/meta/agent.go: `/api/v1/info` `architecture` from 4.3.0.0."""

    @classmethod
    def parse(cls, text: str) -> Release:
        numbers, build = parse_version(text)
        return cls.of(numbers, build)

    @classmethod
    def of(cls, numbers: Version, build: str | None = None) -> Release:
        if numbers < OLDEST:
            raise ValueError(
                f"obshell {'.'.join(map(str, numbers))} is older than the oldest simulated release "
                f"{'.'.join(map(str, OLDEST))}; known profiles: {', '.join(KNOWN_RELEASES)}"
            )
        if numbers < _VERIFICATION_FAILED:
            unauthorized = "err.unauthorized"
        elif numbers < _VERIFICATION_DETAIL:
            unauthorized = "Verification failed"
        elif numbers < _ERR_CODES:
            unauthorized = "Verification failed: %s"
        else:
            unauthorized = ""
        return cls(
            numbers=numbers,
            build=build or DEFAULT_BUILD,
            auth_v1_only=numbers < _AUTH_V2,
            supported_auth=numbers >= _SUPPORTED_AUTH,
            agent_header=numbers >= _AGENT_HEADER,
            uri_checked_first=numbers >= _URI_FIRST,
            unauthorized_message=unauthorized,
            err_codes=numbers >= _ERR_CODES,
            decrypt_failed_code=1 if numbers >= _KEY_1024 else 0,
            dag_history_routes=numbers >= _DAG_HISTORY,
            strict_stop_checks=numbers >= _STRICT_STOP,
            zone_stop_routes=numbers >= _STRICT_STOP,
            dag_id_must_round_trip=numbers >= _AGENT_HEADER,
            stop_sql_skips_missing_observer=numbers >= _ERR_CODES,
            key_bits=1024 if numbers >= _KEY_1024 else 512,
            info_ob_version=numbers >= _INFO_OB_VERSION,
            info_security=numbers >= _AGENT_HEADER,
            info_architecture=numbers >= _DAG_HISTORY,
        )

    @property
    def version(self) -> str:
        """What `/api/v1/info` `data.version` says: the plain four-part version (README.md#obshell-releases-the-simulator-reproduces)."""
        return ".".join(map(str, self.numbers))

    @property
    def status_version(self) -> str:
        """What `/api/v1/status` `data.version` says: `<version>-<release>` (constant.VERSION_RELEASE, README.md#obshell-releases-the-simulator-reproduces)."""
        return f"{self.version}-{self.build}"

    def unauthorized(self, detail: str) -> str:
        """The message of a 401 code 10008 before 4.3.1.0, for a failure whose detail text is `detail`."""
        template = self.unauthorized_message or "Unauthorized: %s"
        return template % detail if "%s" in template else template

    def error_line(self, err_code: str, message: str) -> str:
        """A task log's error line (engine/task/task.go ExecuteErrorLog): `ERROR: [<errCode>]: <message>`
        from 4.3.1.0, `ERROR: <message>` before (ob/agent/engine/task/task_dto.go, README.md#obshell-releases-the-simulator-reproduces)."""
        return f"ERROR: [{err_code}]: {message}" if self.err_codes else f"ERROR: {message}"

    def __str__(self) -> str:
        notes = " (inferred from the SDKs: not in obshell's public history)" if self.auth_v1_only else ""
        return f"obshell {self.version}{notes}"


NEWEST_RELEASE = Release.parse(NEWEST)
