"""docker-compose.yml and the Dockerfile, checked without Docker: the file loads as Compose reads it
(YAML with merge keys) and says what the deployment needs — Redis with AOF and a health check, the bot
on a data volume, a GPU worker that scales, a CPU worker profile — with commands our CLI accepts and
settings our code reads."""

from __future__ import annotations

import re
import shlex

import pytest
import yaml

from adapters.cli import parser
from bot.settings import load_settings
from tests.integration.harness import ROOT

REMIXBOT_SERVICES = ("bot", "worker", "worker-cpu")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))


def test_redis_persists_with_aof_and_has_a_health_check(compose):
    redis = compose["services"]["redis"]
    command = redis["command"] if isinstance(redis["command"], list) else shlex.split(redis["command"])
    assert command[0] == "redis-server"
    assert command[command.index("--appendonly") + 1] == "yes"
    assert "redis-cli" in redis["healthcheck"]["test"] and "ping" in redis["healthcheck"]["test"]
    volume, path = redis["volumes"][0].split(":")
    assert path == "/data" and volume in compose["volumes"]  # the AOF file outlives the container


def test_every_remixbot_service_runs_a_real_command_against_the_compose_redis(compose):
    services = compose["services"]
    commands = {name: parser().parse_args(services[name]["command"]).command for name in REMIXBOT_SERVICES}
    assert commands == {"bot": "run", "worker": "worker", "worker-cpu": "worker"}
    for name in REMIXBOT_SERVICES:
        service = services[name]
        assert service["build"] == "." and service["env_file"] == ".env"  # settings and tokens from .env
        settings = load_settings(service["environment"])
        assert re.fullmatch(r"redis://redis:6379/\d+", settings.redis_url), name  # the redis service
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


def test_compose_settings_are_documented_and_the_image_runs_the_remixbot_command():
    documented = (ROOT / "config" / "remixbot.example.env").read_text(encoding="utf-8")
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    for name in REMIXBOT_SERVICES:
        for variable in compose["services"][name]["environment"]:
            assert variable == "HF_HOME" or f"# {variable}=" in documented, variable
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert re.search(r"^FROM python:3\.1[1-9]", dockerfile, re.MULTILINE)
    assert 'ENTRYPOINT ["remixbot"]' in dockerfile
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    assert {".env", ".git", "data"} <= set(ignored)  # no secrets or history in the image
