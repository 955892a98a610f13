"""The deployment files say only what the code makes true: settings, metrics, ports, timeouts, names."""

from __future__ import annotations

import importlib
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from worker.contract.names import DEAD_LETTER_QUEUE, WORKER_QUEUE
from worker.observability.metrics import Metrics
from worker.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
K8S = ROOT / "ops" / "k8s"
DOCKERFILE = ROOT / "ops" / "Dockerfile"
DEFINITIONS = ROOT / "ops" / "rabbitmq" / "definitions.json"
ALERTS = ROOT / "ops" / "prometheus" / "alerts.yml"
RUNBOOK = ROOT / "docs" / "RUNBOOK.md"

WORKER_VARIABLE = re.compile(r"(?<![A-Za-z0-9_])WORKER_[A-Z0-9_]+")
# PromQL words that look like metric names but are functions, keywords or label names.
PROMQL_WORDS = {
    "sum", "rate", "increase", "delta", "deriv", "absent", "histogram_quantile", "by", "and", "or",
    "unless", "on", "without", "le", "queue", "outcome", "reason", "dependency", "type",
    "humanizePercentage", "humanizeDuration", "value", "labels",
}


def _yaml_documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _manifests() -> list[dict[str, Any]]:
    return [doc for path in sorted(K8S.glob("*.yaml")) for doc in _yaml_documents(path)]


def _manifest(kind: str, name: str | None = None) -> dict[str, Any]:
    found = [m for m in _manifests() if m["kind"] == kind and (name is None or m["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def _compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def _worker_config() -> dict[str, str]:
    return _manifest("ConfigMap", "llm-worker-config")["data"]


def _pod_specs() -> list[tuple[str, dict[str, Any]]]:
    specs = []
    for m in _manifests():
        if m["kind"] in ("Deployment", "Job"):
            specs.append((m["metadata"]["name"], m["spec"]["template"]["spec"]))
        elif m["kind"] == "CronJob":
            specs.append((m["metadata"]["name"], m["spec"]["jobTemplate"]["spec"]["template"]["spec"]))
    return specs


def _containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return spec.get("initContainers", []) + spec["containers"]


def _valid_worker_variables() -> set[str]:
    names = {f"WORKER_{field.upper()}" for field in Settings.model_fields}
    # The one variable read outside the fields: where secret files live (see model_config).
    settings_source = (ROOT / "worker" / "settings.py").read_text()
    names |= {name for name in WORKER_VARIABLE.findall(settings_source) if name == "WORKER_SECRETS_DIR"}
    return names


# --- settings --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [COMPOSE, *sorted(K8S.glob("*.yaml"))],
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_every_worker_variable_named_in_a_deployment_file_is_a_real_setting(path: Path) -> None:
    named = set(WORKER_VARIABLE.findall(path.read_text()))
    unknown = named - _valid_worker_variables()
    assert not unknown, f"{path.name} names variables no setting reads: {sorted(unknown)}"


def test_every_configmap_value_is_accepted_by_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    # As environment variables, the way a pod gets them (a JSON value is parsed from the text).
    config = _worker_config()
    config.pop("WORKER_SECRETS_DIR")
    for name, value in config.items():
        monkeypatch.setenv(name, value)
    settings = Settings(_env_file=None)
    for name in config:
        assert name.removeprefix("WORKER_").lower() in Settings.model_fields, name
    assert settings.quota_thresholds == {"default": [80, 100]}


def test_secret_files_named_like_the_variables_fill_the_settings(tmp_path: Path) -> None:
    (tmp_path / "WORKER_DATABASE_URL").write_text("postgresql+asyncpg://u:p@db:5432/aiworker")
    settings = Settings(_env_file=None, _secrets_dir=tmp_path)
    assert settings.database_url == "postgresql+asyncpg://u:p@db:5432/aiworker"


def test_the_example_secrets_hold_placeholders_only() -> None:
    for secret in _yaml_documents(K8S / "secrets.example.yaml"):
        for key, value in secret["stringData"].items():
            assert "CHANGE_ME" in value, f"{secret['metadata']['name']}/{key} is not a placeholder"


def test_the_example_secrets_are_not_applied_by_kustomize() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert "secrets.example.yaml" not in kustomization["resources"]


def test_kustomization_lists_every_manifest_but_the_example_secrets() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml", "secrets.example.yaml"}
    assert files <= set(kustomization["resources"])


# --- compose ---------------------------------------------------------------------------------


def test_the_compose_worker_runs_two_replicas_after_migrate_grants_and_policy_completed() -> None:
    services = _compose()["services"]
    worker = services["worker"]
    assert worker["deploy"]["replicas"] == 2
    depends = worker["depends_on"]
    for one_shot in ("migrate", "grants", "policy"):
        assert depends[one_shot]["condition"] == "service_completed_successfully"
    for server in ("postgres", "rabbitmq"):
        assert depends[server]["condition"] == "service_healthy"
        assert "healthcheck" in services[server]


def test_compose_set_up_steps_run_in_deploy_order() -> None:
    services = _compose()["services"]
    assert services["roles"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["migrate"]["depends_on"]["roles"]["condition"] == "service_completed_successfully"
    assert services["grants"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert services["migrate"]["command"] == ["migrate"]
    assert services["policy"]["command"] == ["policy", "apply"]


def test_the_compose_worker_checks_readyz_on_its_http_port_and_outwaits_the_drain() -> None:
    worker = _compose()["services"]["worker"]
    env = worker["environment"]
    port = env["WORKER_HTTP_PORT"]
    assert f"127.0.0.1:{port}/readyz" in " ".join(worker["healthcheck"]["test"])
    assert any(str(p).endswith(f":{port}") for p in worker["ports"])
    grace = int(worker["stop_grace_period"].removesuffix("s"))
    assert grace > float(env["WORKER_SHUTDOWN_TIMEOUT_S"])


def test_the_compose_worker_connects_as_the_restricted_roles() -> None:
    env = _compose()["services"]["worker"]["environment"]
    assert "://aiworker_worker:" in env["WORKER_DATABASE_URL"]
    assert env["WORKER_AMQP_URL"].startswith("amqp://worker:")
    assert "://aiworker_owner:" in _compose()["services"]["migrate"]["environment"]["WORKER_DATABASE_URL"]


def test_the_compose_api_runs_as_the_api_role_on_localhost_after_the_grants() -> None:
    services = _compose()["services"]
    api = services["api"]
    env = api["environment"]
    assert api["command"] == ["api"]
    assert "://aiworker_api:" in env["WORKER_DATABASE_URL"] and env["WORKER_API_ADMIN_TOKEN"]
    port = env["WORKER_API_PORT"]
    assert api["ports"] == [f"127.0.0.1:{port}:{port}"]
    assert f"127.0.0.1:{port}/readyz" in " ".join(api["healthcheck"]["test"])
    assert api["depends_on"]["grants"]["condition"] == "service_completed_successfully"
    assert int(api["stop_grace_period"].removesuffix("s")) > float(env["WORKER_SHUTDOWN_TIMEOUT_S"])
    assert "api-grants.sql" in " ".join(services["grants"]["command"])
    assert services["roles"]["environment"]["PG_API_ROLE"] == "aiworker_api"


def test_every_published_compose_port_listens_on_localhost_only() -> None:
    for name, service in _compose()["services"].items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond localhost"


def test_compose_file_is_valid_for_docker_compose() -> None:
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("no docker CLI on this machine")
    if subprocess.run([docker, "compose", "version"], capture_output=True).returncode != 0:
        pytest.skip("the docker CLI has no compose plugin on this machine")
    done = subprocess.run([docker, "compose", "-f", str(COMPOSE), "config", "-q"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


# --- image -----------------------------------------------------------------------------------


def test_the_dockerfile_builds_in_stages_and_runs_as_a_non_root_user() -> None:
    lines = [line.strip() for line in DOCKERFILE.read_text().splitlines()]
    assert len([line for line in lines if line.startswith("FROM ")]) >= 2
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert 'ENTRYPOINT ["worker"]' in lines and 'CMD ["run"]' in lines


def test_the_image_builds_its_wheel_with_the_migrations_inside() -> None:
    text = DOCKERFILE.read_text()
    build, runtime = text.split("\nFROM ${PYTHON_IMAGE} AS runtime", 1)
    copies = [line.split()[1:] for line in build.splitlines() if line.startswith("COPY ")]
    assert ["pyproject.toml", "setup.py", "README.md", "./"] in copies
    assert ["alembic", "./alembic"] in copies
    assert build.index("COPY alembic") < build.index("pip wheel --no-deps")
    # Nothing beside the installed package: the migrations are inside it.
    assert "alembic" not in runtime


def test_the_docker_build_context_keeps_what_the_image_copies() -> None:
    allowed = (ROOT / ".dockerignore").read_text().splitlines()
    for needed in ("pyproject.toml", "setup.py", "README.md", "worker/", "alembic/"):
        assert f"!{needed}" in allowed


# --- kubernetes ------------------------------------------------------------------------------


def test_worker_probes_hit_livez_and_readyz_on_the_configured_port() -> None:
    container = _manifest("Deployment", "llm-worker")["spec"]["template"]["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    configured = int(_worker_config()["WORKER_HTTP_PORT"])
    for probe, path in (("livenessProbe", "/livez"), ("readinessProbe", "/readyz"), ("startupProbe", "/livez")):
        get = container[probe]["httpGet"]
        assert get["path"] == path
        assert ports.get(get["port"], get["port"]) == configured


def test_termination_grace_period_exceeds_the_drain_timeout() -> None:
    spec = _manifest("Deployment", "llm-worker")["spec"]["template"]["spec"]
    drain = float(_worker_config().get("WORKER_SHUTDOWN_TIMEOUT_S", Settings.model_fields["shutdown_timeout_s"].default))
    assert spec["terminationGracePeriodSeconds"] > drain


@pytest.mark.parametrize("name", ["llm-worker", "llm-worker-api", "llm-worker-migrate", "llm-worker-inbox-maintain"])
def test_every_container_runs_non_root_read_only_unprivileged_with_all_capabilities_dropped(name: str) -> None:
    [spec] = [spec for found, spec in _pod_specs() if found == name]
    assert spec["securityContext"]["runAsNonRoot"] is True
    for container in _containers(spec):
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False
        assert context["readOnlyRootFilesystem"] is True
        assert context["capabilities"]["drop"] == ["ALL"]
        assert "resources" in container and "limits" in container["resources"]


@pytest.mark.parametrize("name", ["llm-worker", "llm-worker-api", "llm-worker-migrate", "llm-worker-inbox-maintain"])
def test_secrets_reach_the_worker_as_files_in_the_secrets_dir(name: str) -> None:
    [spec] = [spec for found, spec in _pod_specs() if found == name]
    secret_volumes = {v["name"] for v in spec["volumes"] if "secret" in v}
    secrets_dir = _worker_config()["WORKER_SECRETS_DIR"]
    worker_containers = [c for c in _containers(spec) if c["image"] == "llm-persistence-worker"]
    assert worker_containers
    for container in worker_containers:
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        assert mounts.get(secrets_dir) in secret_volumes
        assert {"configMapRef": {"name": "llm-worker-config"}} in container["envFrom"]


def test_migrations_and_partition_maintenance_run_as_the_owner_and_the_deployment_as_the_worker() -> None:
    secret_of = {
        name: next(v["secret"]["secretName"] for v in spec["volumes"] if "secret" in v) for name, spec in _pod_specs()
    }
    assert secret_of == {
        "llm-worker": "llm-worker-secrets",
        "llm-worker-api": "llm-worker-api-secrets",
        "llm-worker-migrate": "llm-worker-owner-secrets",
        "llm-worker-inbox-maintain": "llm-worker-owner-secrets",
    }
    job = _manifest("Job", "llm-worker-migrate")["spec"]["template"]["spec"]
    assert job["initContainers"][0]["args"] == ["migrate"]
    grants = job["containers"][0]["command"]
    assert grants[-3:] == ["/ops/postgres/worker-grants.sql", "-f", "/ops/postgres/api-grants.sql"]
    cron = _manifest("CronJob", "llm-worker-inbox-maintain")["spec"]
    assert cron["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["args"] == ["inbox", "maintain"]
    assert cron["concurrencyPolicy"] == "Forbid"
    assert len(cron["schedule"].split()) == 5 and cron["schedule"].split()[2:] == ["*", "*", "*"]


@pytest.mark.parametrize("name", ["llm-worker", "llm-worker-api"])
def test_the_disruption_budget_selects_its_own_deployments_pods_only(name: str) -> None:
    pdb = _manifest("PodDisruptionBudget", name)
    labels = _manifest("Deployment", name)["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    others = [m for m in _manifests() if m["kind"] == "Deployment" and m["metadata"]["name"] != name]
    for other in others:
        assert not pdb["spec"]["selector"]["matchLabels"].items() <= other["spec"]["template"]["metadata"]["labels"].items()


def test_api_probes_hit_livez_and_readyz_on_the_api_port_and_the_service_targets_it() -> None:
    deployment = _manifest("Deployment", "llm-worker-api")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == ["api"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    configured = int(_worker_config()["WORKER_API_PORT"])
    for probe, path in (("livenessProbe", "/livez"), ("readinessProbe", "/readyz"), ("startupProbe", "/livez")):
        get = container[probe]["httpGet"]
        assert get["path"] == path
        assert ports.get(get["port"], get["port"]) == configured
    service = _manifest("Service", "llm-worker-api")
    assert service["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["http"]
    drain = float(_worker_config()["WORKER_SHUTDOWN_TIMEOUT_S"])
    assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > drain + 5  # + preStop


def test_the_example_api_secret_carries_the_admin_token_and_the_api_roles_url() -> None:
    example = {s["metadata"]["name"]: s for s in _yaml_documents(K8S / "secrets.example.yaml")}
    data = example["llm-worker-api-secrets"]["stringData"]
    assert {"WORKER_DATABASE_URL", "WORKER_API_ADMIN_TOKEN"} <= data.keys()
    assert "://aiworker_api:" in data["WORKER_DATABASE_URL"]
    assert _manifest("ConfigMap", "llm-worker-postgres")["data"]["PG_API_ROLE"] == "aiworker_api"


def test_keda_scales_the_worker_on_the_worker_queue_over_http_counting_unacked_messages() -> None:
    scaled = _manifest("ScaledObject")
    assert scaled["spec"]["scaleTargetRef"]["name"] == "llm-worker"
    [trigger] = scaled["spec"]["triggers"]
    assert trigger["type"] == "rabbitmq"
    assert trigger["metadata"]["protocol"] == "http"
    assert trigger["metadata"]["mode"] == "QueueLength"
    assert trigger["metadata"]["queueName"] == WORKER_QUEUE
    auth = _manifest("TriggerAuthentication")
    assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]
    [target] = auth["spec"]["secretTargetRef"]
    assert target["parameter"] == "host"
    example = {s["metadata"]["name"]: s for s in _yaml_documents(K8S / "secrets.example.yaml")}
    assert target["key"] in example[target["name"]]["stringData"]


def test_kustomize_renders_the_manifests_when_kubectl_is_present() -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("no kubectl on this machine")
    done = subprocess.run([kubectl, "kustomize", str(K8S)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    rendered = list(yaml.safe_load_all(done.stdout))
    script_maps = [d for d in rendered if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("llm-worker-postgres-scripts")]
    assert len(script_maps) == 1 and {"worker-grants.sql", "api-grants.sql"} <= script_maps[0]["data"].keys()


# --- rabbitmq --------------------------------------------------------------------------------


def _definitions() -> dict[str, Any]:
    return json.loads(DEFINITIONS.read_text())


def _definitions_policy() -> dict[str, Any]:
    [policy] = [p for p in _definitions()["policies"] if p["name"] == "llm-events-worker"]
    return policy


def test_the_definitions_policy_dead_letters_the_worker_queue_at_least_once() -> None:
    policy = _definitions_policy()
    assert re.fullmatch(policy["pattern"], WORKER_QUEUE)
    assert not re.fullmatch(policy["pattern"], DEAD_LETTER_QUEUE)
    assert policy["definition"] == {
        "delivery-limit": 20,
        "dead-letter-exchange": "",
        "dead-letter-routing-key": DEAD_LETTER_QUEUE,
        "dead-letter-strategy": "at-least-once",
        "overflow": "reject-publish",
    }


def test_the_definitions_policy_applies_to_queues_as_rabbitmq_3_10_requires() -> None:
    # 3.10 rejects `quorum_queues` (a 3.12 value) and would fail to import the whole file.
    assert _definitions_policy()["apply-to"] in ("queues", "all")


def test_the_definitions_policy_equals_the_one_the_worker_applies() -> None:
    try:
        module = importlib.import_module("worker.broker.policy")
    except ModuleNotFoundError:
        pytest.skip("worker.broker.policy does not exist yet (a colleague is writing it)")
    code = module.WORKER_QUEUE_POLICY
    policy = _definitions_policy()
    assert policy["vhost"] == "llm"
    assert (policy["name"], policy["pattern"], policy["priority"], policy["definition"]) == (
        code.name, code.pattern, code.priority, code.definition
    )
    assert policy["apply-to"] == code.apply_to, (
        f"definitions.json applies to {policy['apply-to']!r}, the code to {code.apply_to!r}; "
        "RabbitMQ 3.10 accepts only 'queues', 'exchanges' or 'all'"
    )


def _permissions(user: str) -> dict[str, str]:
    [found] = [p for p in _definitions()["permissions"] if p["user"] == user]
    return found


def test_the_gateway_may_only_declare_and_write_the_exchange() -> None:
    gateway = _permissions("gateway")
    for kind in ("configure", "write"):
        assert re.fullmatch(gateway[kind], "llm.events")
        for other in (WORKER_QUEUE, DEAD_LETTER_QUEUE, "amq.default", "llm.events.other"):
            assert not re.fullmatch(gateway[kind], other)
    assert gateway["read"] == "^$"


def test_the_worker_may_use_its_own_queues_and_the_exchange_only() -> None:
    worker = _permissions("worker")
    own = ["llm.events", WORKER_QUEUE, DEAD_LETTER_QUEUE, "llm.events.worker.delay.30s"]
    for kind in ("configure", "read", "write"):
        for name in own:
            assert re.fullmatch(worker[kind], name), (kind, name)
        for foreign in ("llm.events.billing", "other.queue", "amq.topic"):
            assert not re.fullmatch(worker[kind], foreign), (kind, foreign)
    # Retries and dead letters are published to queues through the default exchange.
    assert re.fullmatch(worker["write"], "amq.default")


def test_every_definitions_user_has_a_salted_sha256_hash_and_a_permission() -> None:
    definitions = _definitions()
    users = {u["name"] for u in definitions["users"]}
    assert {"gateway", "worker"} <= users
    for user in definitions["users"]:
        assert user["hashing_algorithm"] == "rabbit_password_hashing_sha256"
        assert len(user["password_hash"]) == 48  # base64 of a 4-byte salt and a SHA-256
    assert users == {p["user"] for p in definitions["permissions"]}


def test_the_compose_broker_loads_the_definitions() -> None:
    conf = (ROOT / "ops" / "rabbitmq" / "rabbitmq.conf").read_text()
    rabbit = _compose()["services"]["rabbitmq"]
    assert "load_definitions = /etc/rabbitmq/definitions.json" in conf
    assert "./ops/rabbitmq/definitions.json:/etc/rabbitmq/definitions.json:ro" in rabbit["volumes"]
    assert rabbit["image"].startswith("rabbitmq:3.10")


# --- alerts ----------------------------------------------------------------------------------


def _alert_rules() -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]]


def _exported_metric_names() -> set[str]:
    names = set()
    for family in Metrics().registry.collect():
        names.add(family.name)
        if family.type == "counter":
            names.add(f"{family.name}_total")
        if family.type == "histogram":
            names |= {f"{family.name}_{suffix}" for suffix in ("bucket", "count", "sum")}
    return names


def _metric_names(expr: str) -> set[str]:
    without_strings = re.sub(r'"[^"]*"', "", expr)
    without_ranges = re.sub(r"\[[^\]]*\]", "", without_strings)
    without_labels = re.sub(r"\{[^}]*\}", "", without_ranges)
    return {word for word in re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", without_labels) if word not in PROMQL_WORDS}


@pytest.mark.parametrize("rule", _alert_rules(), ids=lambda r: r["alert"])
def test_every_metric_an_alert_reads_is_exported_by_the_worker_or_rabbitmq(rule: dict[str, Any]) -> None:
    names = _metric_names(rule["expr"])
    assert names
    unknown = {n for n in names if not n.startswith("rabbitmq_")} - _exported_metric_names()
    assert not unknown, f"{rule['alert']} reads metrics nothing exports: {sorted(unknown)}"


def _runbook_anchors() -> set[str]:
    anchors = set()
    for line in RUNBOOK.read_text().splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            anchors.add(re.sub(r"[^a-z0-9 _-]", "", title).replace(" ", "-"))
    return anchors


@pytest.mark.parametrize("rule", _alert_rules(), ids=lambda r: r["alert"])
def test_every_alert_links_to_its_own_runbook_section(rule: dict[str, Any]) -> None:
    url = rule["annotations"]["runbook_url"]
    path, _, anchor = url.partition("#")
    assert path == "docs/RUNBOOK.md"
    assert anchor == rule["alert"].lower() and anchor in _runbook_anchors()


def test_the_alerts_cover_dead_letters_consumers_lag_errors_and_outages() -> None:
    exprs = " ".join(rule["expr"] for rule in _alert_rules())
    for needed in (
        'rabbitmq_queue_messages_ready{queue="llm.events.worker.dlq"}',
        "worker_dead_lettered_total",
        "worker_ready",
        'rabbitmq_queue_consumers{queue="llm.events.worker"}',
        'rabbitmq_queue_messages_ready{queue="llm.events.worker"}',
        'worker_events_total{outcome="dead_lettered"}',
        "worker_retries_total",
        "worker_outages_total",
    ):
        assert needed in exprs, needed
