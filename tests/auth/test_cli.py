"""`coffer keys` and `coffer token` through the real CLI, and `coffer serve`'s first admin key."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import jwt
import pytest
from typer.testing import CliRunner

from coffer import auth
from coffer.cli import app
from coffer.db import Database
from coffer.server import build
from tests.api.harness import assert_error, bearer, make_api, make_settings

SECRET = "cli-test-secret-" + "q" * 32
# Settings come from the environment: make sure the caller's own COFFER_* never leak in.
CLEAN_ENV = {name: None for name in os.environ if name.startswith("COFFER_")}
KEY_LINE = re.compile(r"^ck_[A-Za-z0-9]{43}$")


def _url(db: Database) -> str:
    return db.engine.url.render_as_string(hide_password=False)


def _run(db: Database, *args: str, env: dict[str, str | None] | None = None) -> str:
    result = CliRunner().invoke(
        app, [*args, "--database-url", _url(db)], env={**CLEAN_ENV, **(env or {})}
    )
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.mark.parametrize("role", ["admin", "service"])
def test_keys_create_prints_the_key_alone_on_the_last_line(db: Database, role: str) -> None:
    out = _run(db, "keys", "create", "--role", role, "--label", "ci")
    last = out.rstrip("\n").splitlines()[-1]
    assert KEY_LINE.match(last), out
    with make_api(db) as api:
        response = api.client.put(
            "/agencies/a1", json={"name": "A", "commission_bps": 1}, headers=bearer(last)
        )
        if role == "admin":
            assert response.status_code == 200, response.text
        else:
            assert_error(response, 403, "forbidden")


def test_keys_create_refuses_an_unknown_role(db: Database) -> None:
    result = CliRunner().invoke(
        app, ["keys", "create", "--role", "root", "--database-url", _url(db)], env=CLEAN_ENV
    )
    assert result.exit_code == 2


def test_keys_list_and_revoke(db: Database) -> None:
    key = _run(db, "keys", "create", "--role", "service").splitlines()[-1]
    listing = _run(db, "keys", "list")
    assert key not in listing and key[:9] in listing
    key_id = re.search(r"(key_[0-9a-z]{20})", listing)
    assert key_id is not None
    assert "revoked" in _run(db, "keys", "revoke", key_id.group(1))
    with make_api(db) as api:
        response = api.client.put("/users/u1", json={"display_name": "U"}, headers=bearer(key))
        assert_error(response, 401, "unauthenticated")


def test_token_uses_the_configured_secret(db: Database) -> None:
    out = _run(db, "token", "u1", "--ttl-s", "120", env={"COFFER_JWT_SECRET": SECRET})
    token = out.strip().splitlines()[-1]
    claims = jwt.decode(token, SECRET, algorithms=["HS256"])
    assert claims["sub"] == "u1" and claims["exp"] - claims["iat"] == 120
    with make_api(db, jwt_secret=SECRET) as api:
        assert api.client.get("/me", headers=bearer(token)).status_code == 200


def test_token_without_a_configured_secret_uses_the_databases(db: Database) -> None:
    token = _run(db, "token", "u1").strip().splitlines()[-1]
    # The app, also without COFFER_JWT_SECRET, signs and checks with the same stored secret.
    with make_api(db, jwt_secret=None) as api:
        response = api.client.get("/me", headers=bearer(token))
        assert response.status_code == 200, response.text
        assert response.json()["id"] == "u1"


def test_token_refuses_a_bad_user_id(db: Database) -> None:
    result = CliRunner().invoke(
        app, ["token", "no spaces", "--database-url", _url(db)], env=CLEAN_ENV
    )
    assert result.exit_code == 2
    assert "user" in result.output


def test_first_build_issues_an_admin_key_once(db: Database) -> None:
    settings = make_settings(db)
    first = build(settings)
    try:
        assert first.startup_notes, "a fresh database shows its first admin key"
        assert "shown this once" in " ".join(first.startup_notes)
        key = first.startup_notes[-1]
        assert KEY_LINE.match(key)
    finally:
        first.close()
    second = build(settings)
    try:
        assert second.startup_notes == []
    finally:
        second.close()
    with make_api(db) as api:
        response = api.client.put(
            "/agencies/a1", json={"name": "A", "commission_bps": 5}, headers=bearer(key)
        )
        assert response.status_code == 200, response.text
    with db.read() as session:
        assert [k.role for k in auth.list_api_keys(session)] == ["admin"]


def _serve_output(db: Database, tmp_path: Path, name: str) -> str:
    """Start `coffer serve` on a free port, wait until it listens, stop it; its stderr."""
    log = tmp_path / f"{name}.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("COFFER_")}
    env["COFFER_DATABASE_URL"] = _url(db)
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "coffer.cli", "serve", "--port", "0"],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=env,
        )
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and process.poll() is None:
                if (
                    b"Uvicorn running" in log.read_bytes()
                    or b"Application startup complete" in log.read_bytes()
                ):
                    break
                time.sleep(0.1)
        finally:
            process.terminate()
            process.wait(timeout=30)
    return log.read_text()


@pytest.mark.slow
def test_coffer_serve_prints_the_first_admin_key_once(db: Database, tmp_path: Path) -> None:
    first = _serve_output(db, tmp_path, "first")
    keys_shown = [line for line in first.splitlines() if KEY_LINE.match(line.strip())]
    assert len(keys_shown) == 1, first
    assert "shown this once" in first
    second = _serve_output(db, tmp_path, "second")
    assert not [line for line in second.splitlines() if KEY_LINE.match(line.strip())], second
    with make_api(db) as api:
        response = api.client.put(
            "/agencies/a1",
            json={"name": "A", "commission_bps": 5},
            headers=bearer(keys_shown[0].strip()),
        )
        assert response.status_code == 200, response.text


def test_a_short_jwt_secret_is_refused_without_showing_it(db: Database) -> None:
    result = CliRunner().invoke(
        app,
        ["token", "u1", "--database-url", _url(db)],
        env={**CLEAN_ENV, "COFFER_JWT_SECRET": "hunter2-too-short"},
    )
    assert result.exit_code == 2
    assert "COFFER_JWT_SECRET" in result.output and "32 bytes" in result.output
    assert "hunter2" not in result.output
