"""docker-compose.yml and the Dockerfile, checked without Docker: the file loads as Compose reads it
(YAML with merge keys, ``${VAR}`` interpolation from .env) and says what the deployment needs — Redis
with AOF, a password, maxmemory without eviction and a health check that authenticates, the bot on a
data volume, a GPU worker that scales, a CPU worker profile — with commands our CLI accepts and
settings our code reads. The Redis command line is run for real on a redis-server of the test's own."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest
import redis
import yaml

from adapters.cli import parser
from bot.queue.wire import redis_settings
from bot.settings import load_settings
from tests.integration.harness import ROOT, RedisServer

REMIXBOT_SERVICES = ("bot", "worker", "worker-cpu")
PASSWORD = "0f9c2b7e4a1d8c3b6e5f7a9d0c1b2e3f"  # what `openssl rand -hex 16` gives


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's variable substitution: ${VAR}, ${VAR:-default}, ${VAR:?error}, $$ for a dollar."""

    def value(match: re.Match[str]) -> str:
        name, operator, word = match.group(1), match.group(2), match.group(3)
        if env.get(name):
            return env[name]
        if operator == ":?":
            raise ValueError(f"{name}: {word}")
        return word if operator == ":-" else ""

    text = re.sub(r"\$\{(\w+)(?:(:-|:\?)([^}]*))?\}", value, text.replace("$$", "\0"))
    return text.replace("\0", "$")


def load_compose(env: dict[str, str]) -> dict:
    return yaml.safe_load(interpolate((ROOT / "docker-compose.yml").read_text(encoding="utf-8"), env))


@pytest.fixture(scope="module")
def compose() -> dict:
    return load_compose({"REDIS_PASSWORD": PASSWORD})


def test_compose_refuses_to_start_without_a_redis_password():
    with pytest.raises(ValueError, match="REDIS_PASSWORD"):
        load_compose({})


def test_redis_persists_with_aof_has_a_password_a_memory_cap_and_an_authenticated_health_check(compose):
    redis_service = compose["services"]["redis"]
    command = redis_service["command"]
    assert command[0] == "redis-server"
    option = {command[i]: command[i + 1] for i in range(1, len(command), 2)}
    assert option["--appendonly"] == "yes"
    assert option["--requirepass"] == PASSWORD
    assert option["--maxmemory-policy"] == "noeviction"  # a queue never drops a job silently
    assert re.fullmatch(r"\d+[kmg]b", option["--maxmemory"])
    assert redis_service["environment"]["REDISCLI_AUTH"] == PASSWORD  # redis-cli reads it: no -a in ps
    test = redis_service["healthcheck"]["test"]
    assert test[0] == "CMD-SHELL" and "redis-cli ping" in test[1] and "PONG" in test[1]
    volume, path = redis_service["volumes"][0].split(":")
    assert path == "/data" and volume in compose["volumes"]  # the AOF file outlives the container


def test_the_compose_redis_command_runs_and_locks_out_strangers(compose, tmp_path):
    command = compose["services"]["redis"]["command"]
    server = RedisServer(tmp_path / "redis", aof=True, extra=tuple(command[1:]))  # compose's options win
    server.start()
    try:
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=server.port).ping()
        url = load_settings(compose["services"]["bot"]["environment"]).redis_url.replace("@redis:", "@127.0.0.1:")
        url = url.replace(":6379/", f":{server.port}/")
        settings = redis_settings(url)
        client = redis.Redis(port=server.port, password=settings.password, db=settings.database)
        assert client.ping()
        assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
        assert int(client.config_get("maxmemory")["maxmemory"]) > 0
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        client.close()
        if shutil.which("redis-cli"):  # the health check's command, as the container runs it
            probe = compose["services"]["redis"]["healthcheck"]["test"][1].replace(
                "redis-cli", f"redis-cli -p {server.port}"
            )
            plain = {k: v for k, v in os.environ.items() if k != "REDISCLI_AUTH"}
            authed = dict(plain, REDISCLI_AUTH=PASSWORD)
            assert subprocess.run(["sh", "-c", probe], env=authed, timeout=10).returncode == 0
            assert subprocess.run(["sh", "-c", probe], env=plain, timeout=10, capture_output=True).returncode != 0
    finally:
        server.stop()


def test_every_remixbot_service_runs_a_real_command_against_the_compose_redis(compose):
    services = compose["services"]
    commands = {name: parser().parse_args(services[name]["command"]).command for name in REMIXBOT_SERVICES}
    assert commands == {"bot": "run", "worker": "worker", "worker-cpu": "worker"}
    for name in REMIXBOT_SERVICES:
        service = services[name]
        assert service["build"] == "." and service["env_file"] == ".env"  # settings and tokens from .env
        settings = load_settings(service["environment"])
        assert settings.redis_url == f"redis://:{PASSWORD}@redis:6379/0", name  # the redis service, with AUTH
        assert service["depends_on"]["redis"]["condition"] == "service_healthy"
        assert settings.metrics_port > 0


def test_the_bot_keeps_its_data_dir_on_a_named_volume(compose):
    bot = compose["services"]["bot"]
    data_dir = str(load_settings(bot["environment"]).data_dir)
    mounts = dict(reversed(mount.split(":")[:2]) for mount in bot["volumes"])
    assert data_dir in mounts and mounts[data_dir] in compose["volumes"]
    assert "profiles" not in bot


def test_the_worker_reserves_an_nvidia_gpu_and_scales_while_the_cpu_worker_is_a_profile(compose):
    worker, cpu = compose["services"]["worker"], compose["services"]["worker-cpu"]
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    assert "profiles" not in worker  # starts with `docker compose up`
    assert "container_name" not in worker and "ports" not in worker  # `--scale worker=N` needs neither
    assert cpu["profiles"] == ["cpu"] and "deploy" not in cpu  # no GPU needed: runs everywhere
    assert load_settings(cpu["environment"]).device == "cpu"


def test_compose_settings_are_documented_and_the_image_runs_the_remixbot_command(compose):
    documented = (ROOT / "config" / "remixbot.example.env").read_text(encoding="utf-8")
    for name in REMIXBOT_SERVICES:
        for variable in compose["services"][name]["environment"]:
            assert variable == "HF_HOME" or f"# {variable}=" in documented, variable
    text = (ROOT / "docker-compose.yml").read_text(encoding="utf-8")
    for variable in set(re.findall(r"\$\{(\w+)", text)):  # what .env feeds compose itself
        assert f"# {variable}=" in documented or f"\n{variable}=" in documented, variable
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert re.search(r"^FROM python:3\.1[1-9]", dockerfile, re.MULTILINE)
    assert 'ENTRYPOINT ["remixbot"]' in dockerfile
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    assert {".env", ".git", "data"} <= set(ignored)  # no secrets or history in the image
