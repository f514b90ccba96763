"""Checks of the operations files that can run without a Docker engine or a booted systemd:
the files parse, agree with each other and with the Settings model, and the pieces of code
they rely on (healthcheck command, sd_notify) work against real sockets."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import tomllib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from config.settings import Settings
from relay.daemon import sdnotify

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "docker-compose.yml"
UNIT = ROOT / "deploy" / "grasp-relay.service"
ENV_EXAMPLE = ROOT / "deploy" / "grasp-relay.env"
CADDYFILE = ROOT / "deploy" / "Caddyfile"
NGINX = ROOT / "deploy" / "nginx.conf"


# --- helpers --------------------------------------------------------------------------------
def dockerfile_final_stage() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the last stage, with line continuations joined."""
    logical: list[str] = []
    pending = ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        logical.append(pending + stripped)
        pending = ""
    instructions = [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
                    for line in logical]
    last_from = max(i for i, (name, _) in enumerate(instructions) if name == "FROM")
    return instructions[last_from:]


def instruction(name: str) -> list[str]:
    return [args for instr, args in dockerfile_final_stage() if instr == name]


def dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for args in instruction("ENV"):
        for pair in shlex.split(args):
            key, _, value = pair.partition("=")
            env[key] = value
    return env


def settings_from(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Build Settings from exactly `env`, as the daemon would see it in that environment."""
    for key in list(os.environ):
        if key.startswith("GRASP_"):
            monkeypatch.delenv(key)
    for key, value in env.items():
        if key.startswith("GRASP_"):
            monkeypatch.setenv(key, value)
    return Settings(_env_file=None)  # type: ignore[call-arg]


def unit_entries() -> dict[str, list[str]]:
    entries: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        entries.setdefault(key, []).append(value)
    return entries


def parse_env_file(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key] = value
    return values


# --- Dockerfile -------------------------------------------------------------------------------
def test_dockerfile_final_stage_is_slim_python_with_git_and_non_root_user() -> None:
    stage = dockerfile_final_stage()
    assert stage[0][1].startswith("${PYTHON_IMAGE}")
    assert "ARG PYTHON_IMAGE=python:3.11-slim" in DOCKERFILE.read_text()
    runs = " ".join(instruction("RUN"))
    assert "apt-get install" in runs and " git " in f" {runs} "
    assert instruction("USER") == ["grasp"]
    assert "useradd" in runs and "grasp" in runs
    assert instruction("STOPSIGNAL") == ["SIGTERM"]
    assert len([n for n, _ in stage if n == "FROM"]) == 1
    assert DOCKERFILE.read_text().count("FROM ") == 2, "multi-stage: builder + final"


def test_dockerfile_cmd_is_a_declared_console_script() -> None:
    (cmd,) = instruction("CMD")
    argv = json.loads(cmd)
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert argv[0] in scripts
    assert scripts[argv[0]] == "relay.__main__:main"


def test_dockerfile_env_validates_and_matches_expose_and_volume(monkeypatch: pytest.MonkeyPatch) -> None:
    env = dockerfile_env()
    assert env["GRASP_BIND"] == "0.0.0.0:8080"
    assert env["GRASP_LOG_FORMAT"] == "json"
    settings = settings_from(env, monkeypatch)
    assert instruction("EXPOSE") == [str(settings.bind_port)]
    volumes = instruction("VOLUME")[0].split()
    assert volumes == [str(settings.data_dir)]
    assert settings.log_format == "json"
    assert settings.bind_host == "0.0.0.0"


def test_dockerignore_keeps_secrets_state_and_peer_venv_out() -> None:
    patterns = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()}
    for needed in (".git", ".env", "data/", "bench/"):
        assert needed in patterns
    for kept in ("pyproject.toml", "config", "storage", "relay", "purgatory"):
        assert kept not in patterns and f"{kept}/" not in patterns


class _HealthHandler(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        code = self.status if self.path == "/health" else 404
        body = b'{"status":"ok"}'
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def run_healthcheck(status: int) -> int:
    """Run the Dockerfile's HEALTHCHECK argv against a real server on 127.0.0.1."""
    (health,) = instruction("HEALTHCHECK")
    argv = json.loads(health[health.index("CMD") + 3 :].strip())
    assert argv[0] == "python"
    handler = type("Handler", (_HealthHandler,), {"status": status})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        env = {**os.environ, "GRASP_BIND": f"0.0.0.0:{server.server_address[1]}"}
        done = subprocess.run([sys.executable, *argv[1:]], env=env, capture_output=True, timeout=20)
        return done.returncode
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_healthcheck_calls_health_endpoint_with_urllib() -> None:
    (health,) = instruction("HEALTHCHECK")
    assert "/health" in health and "urllib" in health and "curl" not in health
    assert run_healthcheck(200) == 0
    assert run_healthcheck(503) != 0


# --- docker compose ---------------------------------------------------------------------------
def test_compose_relay_service_volume_ports_and_env() -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    relay = compose["services"]["relay"]
    assert relay["build"] == "."
    assert "env_file" not in relay, "env_file is read once per start: the relay reads GRASP_CONFIG_FILE itself"
    assert relay["restart"] == "unless-stopped"
    exposed = instruction("EXPOSE")[0]
    assert any(p.split(":")[-1] == exposed for p in relay["ports"])
    data_volume, conf_mount = relay["volumes"]
    name, target = data_volume.split(":")[:2]
    assert name in compose["volumes"] and target == instruction("VOLUME")[0]
    assert relay["environment"]["GRASP_DATA_DIR"] == target
    conf_dir, conf_target, mode = conf_mount.split(":")
    assert conf_dir.startswith("./") and mode == "ro"
    config_file = relay["environment"]["GRASP_CONFIG_FILE"]
    assert Path(config_file).parent == Path(conf_target), "the directory is mounted, not the file"
    assert compose["services"]["caddy"]["env_file"] == f"{conf_dir[2:]}/{Path(config_file).name}"
    assert relay["environment"]["GRASP_BIND"].endswith(":" + exposed)
    text = COMPOSE.read_text()
    assert "GRASP_DOMAIN" in text and "GRASP_OWNER_NPUB" in text


def test_compose_publishes_plain_http_on_loopback_only() -> None:
    """From outside, only the tls profile's 80/443 are reachable; the relay's plain HTTP
    port is bound to 127.0.0.1 (for a proxy on the host, or curl)."""
    compose = yaml.safe_load(COMPOSE.read_text())
    for port in compose["services"]["relay"]["ports"]:
        assert str(port).startswith("127.0.0.1:"), port
    published = {str(p).split(":")[-2] if str(p).count(":") == 2 else str(p).split(":")[0]
                 for p in compose["services"]["caddy"]["ports"]}
    assert published == {"80", "443"}


def test_compose_caddy_is_optional_behind_tls_profile() -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    caddy = compose["services"]["caddy"]
    assert caddy["profiles"] == ["tls"]
    assert "profiles" not in compose["services"]["relay"], "the relay must start without a profile"
    mounts = [v.split(":") for v in caddy["volumes"]]
    caddyfile_mount = next(m for m in mounts if m[1] == "/etc/caddy/Caddyfile")
    assert (ROOT / caddyfile_mount[0]).resolve() == CADDYFILE
    for named in (m[0] for m in mounts if not m[0].startswith(".")):
        assert named in compose["volumes"]


def test_env_example_names_real_settings_and_validates(monkeypatch: pytest.MonkeyPatch) -> None:
    values = parse_env_file(ENV_EXAMPLE)
    fields = {f"GRASP_{name.upper()}" for name in Settings.model_fields}
    assert set(values) <= fields, set(values) - fields
    assert "GRASP_DOMAIN" in values and "GRASP_OWNER_NPUB" in values
    commented = {
        line.lstrip("#").split("=", 1)[0]
        for line in ENV_EXAMPLE.read_text().splitlines()
        if line.startswith("#GRASP_")
    }
    assert commented <= fields, commented - fields
    assert settings_from(values, monkeypatch).domain == "git.example.org"


def test_readme_settings_table_names_every_setting_and_only_real_ones() -> None:
    """Operators read the README, not the model: a new setting must get its row."""
    import re

    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Settings"):]
    section = section[:section.index("\n## ", 1)]
    named = set(re.findall(r"`(GRASP_[A-Z0-9_]+)`", section))
    fields = {f"GRASP_{name.upper()}" for name in Settings.model_fields}
    assert fields - named == set(), "settings missing from the README table"
    assert named - fields == set(), "README names settings that do not exist"


# --- reverse proxies --------------------------------------------------------------------------
def test_caddyfile_streams_and_points_at_the_compose_relay() -> None:
    text = CADDYFILE.read_text()
    compose = yaml.safe_load(COMPOSE.read_text())
    exposed = instruction("EXPOSE")[0]
    assert "relay" in compose["services"]
    assert f"{{$GRASP_UPSTREAM:relay:{exposed}}}" in text
    assert "{$GRASP_DOMAIN}" in text
    assert "flush_interval -1" in text
    assert "max_size" not in text  # no body limit: the relay enforces its own push cap


def test_nginx_conf_streams_upgrades_and_has_no_body_limit() -> None:
    text = NGINX.read_text()
    for directive in (
        "client_max_body_size 0;",
        "proxy_request_buffering off;",
        "proxy_buffering off;",
        "proxy_set_header Upgrade $http_upgrade;",
        "X-Forwarded-For $proxy_add_x_forwarded_for;",
        "proxy_http_version 1.1;",
    ):
        assert directive in text


def test_nginx_conf_passes_nginx_t(tmp_path: Path) -> None:
    nginx = shutil.which("nginx") or (Path("/usr/sbin/nginx") if Path("/usr/sbin/nginx").exists() else None)
    if nginx is None:
        pytest.skip("nginx binary not installed (apt-get install -y nginx-light)")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
         "-out", str(cert), "-days", "1", "-subj", "/CN=git.example.org"],
        check=True, capture_output=True, timeout=30,
    )
    site = NGINX.read_text()
    site = site.replace("/etc/letsencrypt/live/git.example.org/fullchain.pem", str(cert))
    site = site.replace("/etc/letsencrypt/live/git.example.org/privkey.pem", str(key))
    (tmp_path / "site.conf").write_text(site)
    main = tmp_path / "nginx.conf"
    main.write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\n"
        f"http {{\n  client_body_temp_path {tmp_path};\n  include {tmp_path}/site.conf;\n}}\n"
    )
    done = subprocess.run([str(nginx), "-t", "-c", str(main)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr


# --- systemd unit -----------------------------------------------------------------------------
def test_unit_settings_agree_with_settings_model(monkeypatch: pytest.MonkeyPatch) -> None:
    entries = unit_entries()
    assert entries["Type"] == ["notify"]
    assert entries["ExecStart"] == ["/opt/grasp-relay/venv/bin/grasp-relay"]
    assert entries["Restart"] == ["on-failure"]
    assert entries["DynamicUser"] == ["yes"]
    assert entries["StateDirectory"] == ["grasp-relay"]
    assert "EnvironmentFile" not in entries, "read once per start: the daemon reads GRASP_CONFIG_FILE itself"
    assert entries["KillSignal"] == ["SIGTERM"]
    assert "kill -HUP $MAINPID" in entries["ExecReload"][0]
    env = dict(pair.split("=", 1) for line in entries["Environment"] for pair in shlex.split(line))
    settings = settings_from(env, monkeypatch)
    assert str(settings.config_file) == "/etc/grasp-relay/grasp-relay.env"
    assert str(settings.data_dir) == "/var/lib/grasp-relay" == entries["ReadWritePaths"][0]
    assert settings.log_format == "json"
    stop = entries["TimeoutStopSec"][0]
    assert stop.endswith("s") and float(stop[:-1]) > settings.shutdown_timeout_s
    for flag in ("NoNewPrivileges", "ProtectHome", "PrivateTmp", "ProtectKernelTunables"):
        assert entries[flag] == ["yes"]
    assert entries["ProtectSystem"] == ["strict"]
    assert entries["RestrictAddressFamilies"] == ["AF_INET AF_INET6 AF_UNIX"]


def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze not installed (apt-get install -y --no-install-recommends systemd)")
    # verify refuses a unit whose ExecStart binary does not exist, and the real one lives in
    # /opt/grasp-relay/venv only after installation: point it at an existing executable.
    unit = tmp_path / "grasp-relay.service"
    text = UNIT.read_text().replace("ExecStart=/opt/grasp-relay/venv/bin/grasp-relay", "ExecStart=/bin/true")
    assert text != UNIT.read_text()
    unit.write_text(text)
    done = subprocess.run([tool, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    # verify exits 0 even for unknown keys or unparsable values; those show up as messages
    # naming the unit file, so any such line is a failure.
    ours = [line for line in done.stderr.splitlines() if unit.name in line]
    assert done.returncode == 0 and not ours, done.stderr


# --- sd_notify --------------------------------------------------------------------------------
@pytest.fixture
def notify_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(5)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    yield sock
    sock.close()


def test_notify_sends_datagram_to_notify_socket(notify_socket: socket.socket) -> None:
    assert sdnotify.notify("READY=1") is True
    assert notify_socket.recv(4096) == b"READY=1"
    assert sdnotify.ready("listening on 127.0.0.1:8080") is True
    assert notify_socket.recv(4096) == b"READY=1\nSTATUS=listening on 127.0.0.1:8080"
    assert sdnotify.stopping() is True
    assert notify_socket.recv(4096) == b"STOPPING=1"


def test_notify_supports_abstract_sockets(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"grasp-relay-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert sdnotify.notify("STATUS=ok") is True
        assert sock.recv(4096) == b"STATUS=ok"


def test_notify_without_manager_is_a_quiet_no(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert sdnotify.notify("READY=1") is False
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "nobody-listens.sock"))
    assert sdnotify.notify("READY=1") is False
    monkeypatch.setenv("NOTIFY_SOCKET", "vsock:2:1234")
    assert sdnotify.notify("READY=1") is False


# --- the real daemon with the deployment's expectations ------------------------------------------
GRASP_RELAY = Path(sys.executable).parent / "grasp-relay"


def daemon_env(tmp_path: Path, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRASP_")}
    env.update({
        "GRASP_BIND": f"127.0.0.1:{port}",
        "GRASP_DOMAIN": f"127.0.0.1:{port}",
        "GRASP_DATA_DIR": str(tmp_path / "data"),
        "GRASP_LOG_FORMAT": "json",
        "GRASP_LOG_LEVEL": "warning",
        "GRASP_SYNC_ENABLED": "false",
    })
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_check_config_accepts_the_image_and_unit_environments(tmp_path: Path) -> None:
    if not GRASP_RELAY.exists():
        pytest.skip(f"{GRASP_RELAY} not installed")
    unit_env = dict(
        pair.split("=", 1) for line in unit_entries()["Environment"] for pair in shlex.split(line)
    )
    # the unit's config file, at a path this test can write: the example the README installs
    conf = tmp_path / "grasp-relay.env"
    shutil.copy(ENV_EXAMPLE, conf)
    unit_env["GRASP_CONFIG_FILE"] = str(conf)
    for extra in (dockerfile_env(), unit_env, {"GRASP_BIND": "nonsense"}):
        env = {k: v for k, v in os.environ.items() if not k.startswith("GRASP_")}
        env.update({k: v for k, v in extra.items() if k.startswith("GRASP_")})
        done = subprocess.run(
            [str(GRASP_RELAY), "check-config"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=30
        )
        if extra.get("GRASP_BIND") == "nonsense":
            assert done.returncode != 0 and "GRASP_BIND" in done.stderr
        else:
            assert done.returncode == 0, done.stderr
            for key, value in extra.items():
                if key.startswith("GRASP_"):
                    assert f"{key}={value}" in done.stdout


def test_daemon_notifies_systemd_and_passes_the_docker_healthcheck(
    tmp_path: Path, notify_socket: socket.socket
) -> None:
    """What Type=notify and HEALTHCHECK rely on, against the real daemon: READY=1 once it
    listens, /health answers the image's check, SIGTERM ends it cleanly in time."""
    if not GRASP_RELAY.exists():
        pytest.skip(f"{GRASP_RELAY} not installed")
    port = free_port()
    env = daemon_env(tmp_path, port)
    env["NOTIFY_SOCKET"] = os.environ["NOTIFY_SOCKET"]
    log = (tmp_path / "daemon.log").open("wb")
    proc = subprocess.Popen([str(GRASP_RELAY)], env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
    try:
        notify_socket.settimeout(30)
        assert notify_socket.recv(4096).split(b"\n")[0] == b"READY=1"
        (health,) = instruction("HEALTHCHECK")
        argv = json.loads(health[health.index("CMD") + 3 :].strip())
        check = subprocess.run(
            [sys.executable, *argv[1:]], env={**os.environ, "GRASP_BIND": f"0.0.0.0:{port}"},
            capture_output=True, timeout=20,
        )
        assert check.returncode == 0, check.stderr
        proc.terminate()
        # uvicorn re-raises the captured SIGTERM after its graceful shutdown, so "killed by
        # SIGTERM" is a clean stop here; systemd counts it as success too.
        code = proc.wait(timeout=Settings(_env_file=None).shutdown_timeout_s + 10)  # type: ignore[call-arg]
        assert code in (0, -signal.SIGTERM), (code, (tmp_path / "daemon.log").read_text())
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        log.close()
