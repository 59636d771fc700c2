"""The Bicep templates are well-formed and deploy what the service needs, keyless by default.

The Bicep compiler and Azure are not available where these run, so a light syntax pass
(balanced brackets and strings, module paths and parameters, outputs, stable API versions)
stands in for the compiler, and the templates are read for the settings, probes, outputs,
identities and security properties the service and azd rely on.
"""

from __future__ import annotations

import json
import re

import pytest

from tests.support.bicep import _PARAM, _RESOURCE, app_settings, bicep, modules, outputs, params
from tests.support.deploy import (
    AZURE_DIR,
    BICEP_FILES,
    CONTAINER_APP_BICEP,
    MAIN_BICEP,
    PARAMETERS,
    PORT,
    SERVICE,
    allowed_settings,
)

# What the Azure container app must set (issue 6, point 5).
REQUIRED_APP_SETTINGS = {
    "AZURE_OPENAI_ENDPOINT",
    "AZURE_OPENAI_DEPLOYMENT",
    "AZURE_OPENAI_MODEL",
    "AZURE_CLIENT_ID",
    "REDIS_URL",
    "MICROSOFT_APP_ID",
    "MICROSOFT_APP_TYPE",
    "MICROSOFT_APP_TENANT_ID",
    "LOG_FORMAT",
    "SLACK_BOT_TOKEN",
    "SLACK_SIGNING_SECRET",
}
SECRET_APP_SETTINGS = {"REDIS_URL", "SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET"}

REQUIRED_OUTPUTS = {
    "AZURE_LOCATION",
    "AZURE_TENANT_ID",
    "AZURE_RESOURCE_GROUP",
    "AZURE_CONTAINER_REGISTRY_ENDPOINT",
    f"SERVICE_{SERVICE.upper()}_NAME",
    f"SERVICE_{SERVICE.upper()}_URI",
    "SLACK_EVENTS_URL",
    "TEAMS_MESSAGING_ENDPOINT",
    "MICROSOFT_APP_ID",
    "AZURE_OPENAI_ENDPOINT",
}

ROLE_IDS = {
    "AcrPull": "7f951dda-4ed3-4680-a7ca-43fe172d538d",
    "Key Vault Secrets User": "4633458b-17de-408a-b874-0445c86b69e6",
    "Cognitive Services OpenAI User": "5e0bd9bd-7b93-4f28-af87-19fc36ad61bd",
}


# ------------------------------------------------------------------------------------------
# Bicep: a light syntax pass
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", BICEP_FILES, ids=lambda p: p.relative_to(AZURE_DIR).as_posix())
def test_bicep_file_is_balanced(path):
    try:
        bicep(path)
    except ValueError as error:
        pytest.fail(f"{path.name}: {error}")


@pytest.mark.parametrize("path", BICEP_FILES, ids=lambda p: p.relative_to(AZURE_DIR).as_posix())
def test_bicep_modules_exist_and_get_their_parameters(path):
    b = bicep(path)
    mods = modules(b)
    for symbol, (module_path, passed) in mods.items():
        assert module_path.is_file(), f"module {symbol}: {module_path} does not exist"
        declared = params(bicep(module_path))
        unknown = passed - set(declared)
        assert not unknown, f"module {symbol} passes undeclared {sorted(unknown)}"
        missing = {name for name, has_default in declared.items() if not has_default} - passed
        assert not missing, f"module {symbol} misses required {sorted(missing)}"
    for symbol, output in re.findall(r"\b(\w+)\.outputs\.(\w+)", b.code):
        assert symbol in mods, f"{symbol}.outputs used but {symbol} is not a module"
        assert output in outputs(bicep(mods[symbol][0])), f"{symbol} has no output {output}"


@pytest.mark.parametrize("path", BICEP_FILES, ids=lambda p: p.relative_to(AZURE_DIR).as_posix())
def test_every_bicep_param_is_used(path):
    b = bicep(path)
    # Decorators (descriptions) do not count as a use.
    body = re.sub(r"^\s*@.*$", "", b.code, flags=re.M)
    body = _PARAM.sub("", body)
    unused = [name for name in params(b) if not re.search(rf"\b{name}\b", body)]
    assert not unused, f"{path.name}: unused parameters {unused}"


def test_bicep_uses_stable_api_versions():
    seen: dict[str, set[str]] = {}
    for path in BICEP_FILES:
        for _, kind, version in _RESOURCE.findall(bicep(path).code):
            assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", version), f"{path.name}: {kind}@{version}"
            seen.setdefault(kind.lower(), set()).add(version)
    inconsistent = {kind: v for kind, v in seen.items() if len(v) > 1}
    assert not inconsistent, f"one API version per resource type: {inconsistent}"
    for kind in (
        "microsoft.app/containerapps",
        "microsoft.app/managedenvironments",
        "microsoft.cache/redisenterprise",
        "microsoft.cache/redisenterprise/databases",
        "microsoft.cognitiveservices/accounts",
        "microsoft.cognitiveservices/accounts/deployments",
        "microsoft.keyvault/vaults",
        "microsoft.containerregistry/registries",
        "microsoft.managedidentity/userassignedidentities",
        "microsoft.operationalinsights/workspaces",
        "microsoft.insights/components",
        "microsoft.botservice/botservices",
        "microsoft.botservice/botservices/channels",
        "microsoft.authorization/roleassignments",
    ):
        assert kind in seen, f"no {kind} resource"


# ------------------------------------------------------------------------------------------
# Bicep: what the templates must do
# ------------------------------------------------------------------------------------------


def test_container_app_sets_only_spec_settings():
    settings = app_settings()
    unknown = set(settings) - allowed_settings()
    assert not unknown, f"not settings in SPEC.md section 6: {sorted(unknown)}"
    assert REQUIRED_APP_SETTINGS <= set(settings), sorted(REQUIRED_APP_SETTINGS - set(settings))
    for name in SECRET_APP_SETTINGS:
        assert settings[name][0] == "secretRef", f"{name} must come from Key Vault"
    assert settings["MICROSOFT_APP_TYPE"] == ("value", "'UserAssignedMSI'")
    assert settings["LOG_FORMAT"] == ("value", "'json'")
    assert settings["AZURE_CLIENT_ID"] == settings["MICROSOFT_APP_ID"], "both are the UAMI"
    assert "AZURE_OPENAI_API_KEY" not in settings and "OPENAI_API_KEY" not in settings
    code = bicep(CONTAINER_APP_BICEP).code
    for secret in {expr.strip("'") for kind, expr in settings.values() if kind == "secretRef"}:
        assert re.search(rf"name:\s*'{secret}'\s*\n\s*keyVaultUrl:", code), (
            f"secret {secret} is not a Key Vault reference"
        )


def test_container_app_ingress_probes_and_scaling():
    code = bicep(CONTAINER_APP_BICEP).code
    declared = {m.group(1): m.group(3) for m in _PARAM.finditer(code)}
    assert declared["targetPort"].strip(" =") == str(PORT)
    assert re.search(r"external:\s*true", code) and re.search(r"targetPort:\s*targetPort", code)
    probes = re.findall(r"type:\s*'(\w+)'\s*\n\s*httpGet:\s*\{\s*\n\s*path:\s*'([^']+)'", code)
    assert dict(probes) == {"Startup": "/healthz", "Liveness": "/healthz", "Readiness": "/readyz"}
    for value in re.findall(r"failureThreshold:\s*(\d+)", code):
        assert 1 <= int(value) <= 10, "Container Apps allows failureThreshold 1-10"
    assert re.search(r"@minValue\(1\)\s*\n(?:@.*\n)*param minReplicas int", code)
    assert re.search(r"http:\s*\{\s*\n\s*metadata:\s*\{\s*\n\s*concurrentRequests:", code)
    main = bicep(MAIN_BICEP).code
    assert re.search(rf"var targetPort = {PORT}\b", main)
    assert re.search(r"@minValue\(1\)\s*\n(?:@.*\n)*param minReplicas int = 1\b", main)


def test_main_declares_the_outputs_azd_and_the_manifests_need():
    b = bicep(MAIN_BICEP)
    assert REQUIRED_OUTPUTS <= outputs(b), sorted(REQUIRED_OUTPUTS - outputs(b))
    assert re.search(r"^output SLACK_EVENTS_URL string = '[^\n]*/slack/events'$", b.code, re.M)
    assert re.search(
        r"^output TEAMS_MESSAGING_ENDPOINT string = '[^\n]*/api/messages'$", b.code, re.M
    )
    assert re.search(r"messagingEndpoint: '[^\n]*/api/messages'", b.code)
    assert re.search(r"^targetScope = 'subscription'$", b.code, re.M)


def test_container_app_carries_the_azd_service_tag():
    main = bicep(MAIN_BICEP).code
    assert re.search(rf"var serviceName = '{SERVICE}'", main)
    assert re.search(r"'azd-service-name': serviceName", main)
    assert "'azd-env-name': environmentName" in main


def test_parameters_file_matches_main_bicep():
    declared = params(bicep(MAIN_BICEP))
    values = json.loads(PARAMETERS.read_text())["parameters"]
    assert set(values) <= set(declared), sorted(set(values) - set(declared))
    required = {name for name, has_default in declared.items() if not has_default}
    assert required <= set(values), sorted(required - set(values))
    for name, entry in values.items():
        assert re.fullmatch(r"\$\{[A-Z][A-Z0-9_]*(=[^}]*)?\}", entry["value"]), name
    assert values["environmentName"]["value"] == "${AZURE_ENV_NAME}"
    assert values["location"]["value"] == "${AZURE_LOCATION}"
    exists = f"${{SERVICE_{SERVICE.upper()}_RESOURCE_EXISTS=false}}"
    assert values[f"{SERVICE}Exists"]["value"] == exists


def test_azure_resources_keep_their_identity_and_security_settings():
    def code(name: str) -> str:
        return bicep(AZURE_DIR / "modules" / name).code

    assert ROLE_IDS["AcrPull"] in code("registry.bicep")
    assert re.search(r"adminUserEnabled:\s*false", code("registry.bicep"))
    keyvault = code("keyvault.bicep")
    assert ROLE_IDS["Key Vault Secrets User"] in keyvault
    assert re.search(r"enableRbacAuthorization:\s*true", keyvault)
    assert "'slack-bot-token'" in keyvault and "'slack-signing-secret'" in keyvault
    openai = code("openai.bicep")
    assert ROLE_IDS["Cognitive Services OpenAI User"] in openai
    assert re.search(r"kind:\s*'OpenAI'", openai)
    assert re.search(r"disableLocalAuth:\s*true", openai)
    assert re.search(r"customSubDomainName:\s*name", openai)
    redis = code("redis.bicep")
    assert re.search(r"clientProtocol:\s*'Encrypted'", redis)
    assert re.search(r"var redisPort = 10000\b", redis) and re.search(r"port:\s*redisPort", redis)
    assert re.search(r"param clusteringPolicy string = 'OSSCluster'", redis)
    assert re.search(r"clusteringPolicy:\s*clusteringPolicy", redis)
    assert re.search(
        r"accessKeysAuthentication:\s*auth == 'entra' \? 'Disabled' : 'Enabled'", redis
    )
    assert "value: 'rediss://:${uriComponent(database.listKeys().primaryKey)}@" in redis
    assert re.search(r"minimumTlsVersion:\s*'1\.2'", redis)
    # Markers and locks carry TTLs: any eviction policy could drop them before they expire.
    assert re.search(r"param evictionPolicy string = 'NoEviction'", redis)
    assert re.search(r"evictionPolicy:\s*evictionPolicy", redis)
    assert "evictionPolicy" not in bicep(MAIN_BICEP).code, "main.bicep must keep the default"
    bot = code("bot.bicep")
    assert re.search(r"kind:\s*'azurebot'", bot)
    assert re.search(r"msaAppType:\s*'UserAssignedMSI'", bot)
    for prop in ("msaAppId", "msaAppMSIResourceId", "msaAppTenantId", "endpoint"):
        assert re.search(rf"{prop}:\s*\w+", bot), prop
    assert re.search(r"name:\s*'MsTeamsChannel'", bot)
    assert re.search(r"channelName:\s*'MsTeamsChannel'", bot)
    assert re.search(r"isEnabled:\s*true", bot)
    app = code("container-app.bicep")
    assert re.search(r"type:\s*'UserAssigned'", app)
    assert re.search(r"server:\s*registryLoginServer\s*\n\s*identity:\s*identityId", app)


def test_keyless_redis_is_the_default_with_an_access_policy_and_no_secret():
    """REDIS_AUTH=entra: access keys off, the identity let in, no Redis secret in Key Vault."""
    main = bicep(MAIN_BICEP).code
    assert re.search(r"param redisAuth string = 'entra'", main)
    assert re.search(r"param redisClusteringPolicy string = 'OSSCluster'", main)
    assert "'EnterpriseCluster'" in main, "EnterpriseCluster stays an option"
    assert re.search(r"appPrincipalId:\s*identity\.outputs\.principalId", main)
    redis = bicep(AZURE_DIR / "modules" / "redis.bicep").code
    assignment = re.search(
        r"resource \w+ 'Microsoft\.Cache/redisEnterprise/databases/accessPolicyAssignments@[\d-]+'"
        r" = if \(auth == 'entra'\) \{(.*?)\n\}",
        redis,
        re.S,
    )
    assert assignment, "no access policy assignment for the app's identity"
    assert re.search(r"accessPolicyName:\s*'default'", assignment.group(1))
    assert re.search(r"objectId:\s*appPrincipalId", assignment.group(1))
    # The Key Vault secret (the access key in a URL) exists only with password auth.
    assert re.search(r"resource redisUrlSecret '[^']+' = if \(auth == 'password'\)", redis)
    assert re.search(r"output redisUrl string = auth == 'entra' \? 'rediss://\$\{", redis)
    assert re.search(r"output cluster bool = clusteringPolicy == 'OSSCluster'", redis)
    app = bicep(CONTAINER_APP_BICEP).code
    assert re.search(
        r"redisUrlSettings = empty\(redisUrlSecretUri\) \? \[\s*\{\s*name: 'REDIS_URL'\s*"
        r"value: redisUrl",
        app,
    )
    assert re.search(r"redisSecrets = empty\(redisUrlSecretUri\) \? \[\]", app)
    settings = app_settings()
    assert settings["REDIS_CLUSTER"] == ("value", "redisCluster ? 'true' : 'false'")
    assert settings["REDIS_AUTH"] == ("value", "redisAuth")
