"""The container files and docs/DEPLOY.md keep what docs/DEPLOY.md promises: a non-root worker on port 8000 with a
health check on /healthz, the CPU torch wheel pinned like the README, and a compose file whose bot reaches the
worker by its service name. (Building the image is not a test: it needs a registry; see docs/DEPLOY.md.)"""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).parents[1]


def _instructions(name: str) -> list[tuple[str, str]]:
    text = re.sub(r"\\\n\s*", " ", (ROOT / name).read_text())
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in text.splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def test_images_run_the_worker_as_a_non_root_user_with_a_health_check():
    readme_torch = re.search(r"torch==([\d.]+)", (ROOT / "README.md").read_text()).group(1)
    for name in ("Dockerfile", "Dockerfile.cuda"):
        steps = _instructions(name)
        kinds = [kind for kind, _ in steps]
        args = dict(steps)
        assert json.loads(args["ENTRYPOINT"]) == ["mafioso", "worker", "--host", "0.0.0.0"], name
        assert args["EXPOSE"] == "8000" and "/healthz" in args["HEALTHCHECK"], name
        user = max(i for i, kind in enumerate(kinds) if kind == "USER")
        assert steps[user][1] == "mafioso" and user < kinds.index("ENTRYPOINT"), name
        prepare = next(i for i, (kind, arg) in enumerate(steps) if kind == "RUN" and "mafioso model prepare" in arg)
        assert prepare > user, f"{name}: the cache is prepared as the user that serves from it"
    cpu = dict(_instructions("Dockerfile"))
    assert "python:3.12-slim" in (ROOT / "Dockerfile").read_text()
    assert f"TORCH_VERSION={readme_torch}" in (ROOT / "Dockerfile").read_text()
    assert '"torch==${TORCH_VERSION}+cpu"' in (ROOT / "Dockerfile").read_text() and "whl/cpu" in str(cpu)


def test_compose_runs_the_worker_and_the_bot_with_volumes_and_env_secrets():
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    worker, bot = compose["services"]["worker"], compose["services"]["bot"]
    assert bot["entrypoint"] == ["mafioso", "serve", "--worker-url", "http://worker:8000"]
    assert bot["depends_on"]["worker"]["condition"] == "service_healthy"
    assert "/healthz" in " ".join(worker["healthcheck"]["test"])
    mounts = {volume.split(":")[1] for volume in worker["volumes"]}
    assert mounts == {"/var/lib/mafioso/cache", "/var/lib/mafioso/feedback"}
    assert set(compose["volumes"]) == {"model-cache", "feedback"}
    for service in (worker, bot):
        assert service["user"] == "10001:10001" and service["env_file"] == ".env"


def test_deploy_doc_gives_the_vllm_command_and_the_client_settings():
    doc = (ROOT / "docs" / "DEPLOY.md").read_text()
    served = re.search(r'vllm serve "\$BASE" --enable-lora --lora-modules mafioso="\$ADAPTER" --max-lora-rank (\d+)',
                       doc)
    assert served
    assert "MAFIOSO_WORKER_API=openai mafioso serve --worker-url" in doc
    rank = json.loads((ROOT / "mafioso" / "adapter" / "adapter_config.json").read_text())["r"]
    assert rank <= int(served[1]), "the shipped adapter's rank must fit --max-lora-rank in docs/DEPLOY.md"
