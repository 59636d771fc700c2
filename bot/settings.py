"""Every setting of docs/spec.md §6 in one pydantic-settings class.

Names are the environment names of the spec (case-insensitive); `load_settings` turns a
validation failure into one line naming the setting, which is what start-up prints. A default
never makes a valid configuration fail: unset, PROMPT_MAX_TOKENS follows the token limits.
"""

from __future__ import annotations

from typing import Literal

from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from bot.setting_values import admin_entries_problem, azure_resource_url, redis_url_problem
from bot.trimming import (
    PROMPT_MAX_TOKENS_CAP,
    default_prompt_max_tokens,
    largest_prompt,
    prompt_budget,
)


class SettingsError(Exception):
    """A setting is missing or invalid; `str()` is the one line to show the operator."""


def _alias(*names: str) -> AliasChoices:
    return AliasChoices(*names)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        case_sensitive=False,
        extra="ignore",
        populate_by_name=True,
    )

    # --- model (§4)
    azure_openai_endpoint: str | None = Field(
        None, validation_alias=_alias("AZURE_OPENAI_ENDPOINT")
    )
    openai_base_url: str | None = Field(None, validation_alias=_alias("OPENAI_BASE_URL"))
    azure_openai_api_key: SecretStr | None = Field(
        None, validation_alias=_alias("AZURE_OPENAI_API_KEY", "OPENAI_API_KEY")
    )
    azure_openai_deployment: str | None = Field(
        None, validation_alias=_alias("AZURE_OPENAI_DEPLOYMENT")
    )
    azure_openai_model: str | None = Field(None, validation_alias=_alias("AZURE_OPENAI_MODEL"))
    azure_client_id: str | None = Field(None, validation_alias=_alias("AZURE_CLIENT_ID"))
    token_limit: int = Field(16384, gt=0, validation_alias=_alias("TOKEN_LIMIT"))
    max_response_tokens: int = Field(1024, gt=0, validation_alias=_alias("MAX_RESPONSE_TOKENS"))
    temperature: float | None = Field(None, ge=0, le=2, validation_alias=_alias("TEMPERATURE"))
    llm_max_retries: int = Field(3, ge=0, le=20, validation_alias=_alias("LLM_MAX_RETRIES"))
    llm_timeout_seconds: float = Field(60, gt=0, validation_alias=_alias("LLM_TIMEOUT_SECONDS"))

    # --- model calls: pacing, deadlines, the reply cap, token margin (docs/spec.md §4)
    llm_reply_deadline_seconds: float = Field(
        300, gt=0, validation_alias=_alias("LLM_REPLY_DEADLINE_SECONDS")
    )
    llm_wait_seconds: float = Field(180, ge=0, validation_alias=_alias("LLM_WAIT_SECONDS"))
    llm_cap_field: Literal["auto", "max_completion_tokens", "max_tokens"] = Field(
        "auto", validation_alias=_alias("LLM_CAP_FIELD")
    )
    token_safety_margin: float = Field(
        0, ge=0, le=100, validation_alias=_alias("TOKEN_SAFETY_MARGIN")
    )

    # --- prompts and admins (§5)
    system_prompt: str = Field(
        "You are a helpful assistant.", validation_alias=_alias("SYSTEM_PROMPT")
    )
    # The cap; unset, the limits may lower it (`_budget`).
    prompt_max_tokens: int = Field(
        PROMPT_MAX_TOKENS_CAP, gt=0, validation_alias=_alias("PROMPT_MAX_TOKENS")
    )
    bot_admins: str = Field("", validation_alias=_alias("BOT_ADMINS"))

    # --- running summary of what trimming drops (§3)
    history_summary: bool = Field(False, validation_alias=_alias("HISTORY_SUMMARY"))
    summary_max_tokens: int = Field(
        500, gt=0, le=8000, validation_alias=_alias("SUMMARY_MAX_TOKENS")
    )

    # --- store (§3)
    redis_url: SecretStr | None = Field(None, validation_alias=_alias("REDIS_URL"))
    redis_key_prefix: str = Field("threadwise:", validation_alias=_alias("REDIS_KEY_PREFIX"))
    history_ttl_seconds: int = Field(604800, gt=0, validation_alias=_alias("HISTORY_TTL_SECONDS"))

    # --- Redis at scale: a Cluster, keyless auth (bot/store/connect.py)
    redis_cluster: bool = Field(False, validation_alias=_alias("REDIS_CLUSTER"))
    redis_auth: Literal["password", "entra"] = Field(
        "password", validation_alias=_alias("REDIS_AUTH")
    )

    # --- budgets, rate limits, redaction and retention (issue 18)
    usage_retention_days: int = Field(
        35, ge=1, le=3660, validation_alias=_alias("USAGE_RETENTION_DAYS")
    )
    audit_retention_days: int = Field(
        365, ge=0, le=36600, validation_alias=_alias("AUDIT_RETENTION_DAYS")
    )
    quota_user_daily_tokens: int = Field(
        0, ge=0, validation_alias=_alias("QUOTA_USER_DAILY_TOKENS")
    )
    quota_channel_daily_tokens: int = Field(
        0, ge=0, validation_alias=_alias("QUOTA_CHANNEL_DAILY_TOKENS")
    )
    quota_workspace_daily_tokens: int = Field(
        0, ge=0, validation_alias=_alias("QUOTA_WORKSPACE_DAILY_TOKENS")
    )
    rate_limit_user_per_minute: int = Field(
        0, ge=0, validation_alias=_alias("RATE_LIMIT_USER_PER_MINUTE")
    )
    redact_pii: bool = Field(False, validation_alias=_alias("REDACT_PII"))

    # --- Slack
    slack_bot_token: SecretStr | None = Field(None, validation_alias=_alias("SLACK_BOT_TOKEN"))
    slack_signing_secret: SecretStr | None = Field(
        None, validation_alias=_alias("SLACK_SIGNING_SECRET")
    )
    slack_app_token: SecretStr | None = Field(None, validation_alias=_alias("SLACK_APP_TOKEN"))
    slack_api_url: str = Field("https://slack.com/api/", validation_alias=_alias("SLACK_API_URL"))
    slack_thread_followups: bool = Field(True, validation_alias=_alias("SLACK_THREAD_FOLLOWUPS"))

    # --- Teams
    microsoft_app_id: str | None = Field(None, validation_alias=_alias("MICROSOFT_APP_ID"))
    microsoft_app_password: SecretStr | None = Field(
        None, validation_alias=_alias("MICROSOFT_APP_PASSWORD")
    )
    microsoft_app_tenant_id: str | None = Field(
        None, validation_alias=_alias("MICROSOFT_APP_TENANT_ID")
    )
    microsoft_app_type: Literal["MultiTenant", "SingleTenant", "UserAssignedMSI"] = Field(
        "MultiTenant", validation_alias=_alias("MICROSOFT_APP_TYPE")
    )
    teams_allow_anonymous: bool = Field(False, validation_alias=_alias("TEAMS_ALLOW_ANONYMOUS"))
    # App ids that may call with a token lacking the `serviceurl` claim (agent-to-agent).
    teams_allowed_callers: str = Field("", validation_alias=_alias("TEAMS_ALLOWED_CALLERS"))
    teams_allowed_channels: str = Field(
        "msteams", validation_alias=_alias("TEAMS_ALLOWED_CHANNELS")
    )

    # --- limits: the service stays up when one user floods it
    model_max_concurrency: int = Field(256, gt=0, validation_alias=_alias("MODEL_MAX_CONCURRENCY"))
    conversation_queue_max: int = Field(50, gt=0, validation_alias=_alias("CONVERSATION_QUEUE_MAX"))

    # --- feedback and the Slack assistant pane (issue 17)
    feedback: bool = Field(True, validation_alias=_alias("FEEDBACK"))
    slack_suggested_prompts: str = Field("", validation_alias=_alias("SLACK_SUGGESTED_PROMPTS"))
    # --- files and images (README "Files and images")
    files_max_bytes: int = Field(20_000_000, gt=0, validation_alias=_alias("FILES_MAX_BYTES"))
    model_supports_images: Literal["auto", "true", "false"] = Field(
        "auto", validation_alias=_alias("MODEL_SUPPORTS_IMAGES")
    )

    # --- server and logs
    host: str = Field("0.0.0.0", validation_alias=_alias("HOST"))
    port: int = Field(3978, ge=0, le=65535, validation_alias=_alias("PORT"))
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field(
        "INFO", validation_alias=_alias("LOG_LEVEL")
    )
    log_format: Literal["json", "text"] = Field("json", validation_alias=_alias("LOG_FORMAT"))
    metrics_token: SecretStr | None = Field(None, validation_alias=_alias("METRICS_TOKEN"))

    @field_validator(
        "log_level",
        "microsoft_app_type",
        "log_format",
        "llm_cap_field",
        "redis_auth",
        "model_supports_images",
        mode="before",
    )
    @classmethod
    def _normalise_case(cls, value: object, info) -> object:
        if not isinstance(value, str):
            return value
        if info.field_name == "log_level":
            return value.strip().upper()
        if info.field_name in (
            "log_format",
            "llm_cap_field",
            "redis_auth",
            "model_supports_images",
        ):
            return value.strip().lower()
        wanted = {v.lower(): v for v in ("MultiTenant", "SingleTenant", "UserAssignedMSI")}
        return wanted.get(value.strip().lower(), value)

    @field_validator("azure_openai_endpoint", "openai_base_url", "slack_api_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError("needs an http(s):// URL")
        return value

    @field_validator("azure_openai_endpoint")
    @classmethod
    def _azure_resource(cls, value: str | None) -> str | None:
        return azure_resource_url(value) if value else value

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        if not value.get_secret_value().startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("needs a redis:// or rediss:// URL")
        return value

    @field_validator("slack_suggested_prompts")
    @classmethod
    def _suggested_prompts(cls, value: str) -> str:
        from bot.suggestions import parse_json

        parse_json(value)  # raises ValueError saying what is wrong
        return value

    @model_validator(mode="after")
    def _redis_entra(self) -> Settings:
        """With REDIS_AUTH=entra the token is the password: one in REDIS_URL would be ignored."""
        if self.redis_url is not None:
            problem = redis_url_problem(self.redis_url.get_secret_value(), self.redis_auth)
            if problem:
                raise ValueError(problem)
        return self

    @field_validator("bot_admins")
    @classmethod
    def _admins(cls, value: str) -> str:
        problem = admin_entries_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @model_validator(mode="after")
    def _budget(self) -> Settings:
        """The limits must hold a system prompt and a message; PROMPT_MAX_TOKENS follows them.

        Unset, PROMPT_MAX_TOKENS is 2000, or half of what the limits leave a system prompt
        when that is less (`trimming.default_prompt_max_tokens`), so setting only TOKEN_LIMIT
        and MAX_RESPONSE_TOKENS never fails on a default. Only a value set explicitly that
        leaves no room for a user message is an error.
        """
        largest = largest_prompt(self.token_limit, self.max_response_tokens)
        if largest < 1:
            room = self.token_limit - self.max_response_tokens
            raise ValueError(
                "MAX_RESPONSE_TOKENS: must leave room under TOKEN_LIMIT for a system prompt and "
                f"a message (TOKEN_LIMIT {self.token_limit} - MAX_RESPONSE_TOKENS "
                f"{self.max_response_tokens} = {room} tokens; at least {room - largest + 1})"
            )
        if "prompt_max_tokens" not in self.model_fields_set:
            self.prompt_max_tokens = default_prompt_max_tokens(
                self.token_limit, self.max_response_tokens
            )
        elif self.prompt_max_tokens > largest:
            raise ValueError(
                f"PROMPT_MAX_TOKENS: {self.prompt_max_tokens} leaves no room for a message under "
                f"TOKEN_LIMIT {self.token_limit} with MAX_RESPONSE_TOKENS "
                f"{self.max_response_tokens}: at most {largest} (unset, it is "
                f"{default_prompt_max_tokens(self.token_limit, self.max_response_tokens)})"
            )
        return self

    # --- derived views

    @property
    def admins(self) -> frozenset[str]:
        return frozenset(e.strip() for e in self.bot_admins.split(",") if e.strip())

    @property
    def teams_callers(self) -> frozenset[str]:
        return frozenset(
            e.strip().lower() for e in self.teams_allowed_callers.split(",") if e.strip()
        )

    @property
    def teams_channels(self) -> frozenset[str]:
        return frozenset(
            e.strip().lower() for e in self.teams_allowed_channels.split(",") if e.strip()
        )

    @property
    def model_base_url(self) -> str | None:
        """The v1 base URL: `OPENAI_BASE_URL` as given, or `<endpoint>/openai/v1/`."""
        if self.openai_base_url:
            return self.openai_base_url.rstrip("/") + "/"
        if self.azure_openai_endpoint:
            return self.azure_openai_endpoint.rstrip("/") + "/openai/v1/"
        return None

    @property
    def history_budget(self) -> int:
        """Most history tokens that could ever be sent (the store keeps no more)."""
        return prompt_budget(self.token_limit, self.max_response_tokens)

    @property
    def slack_enabled(self) -> bool:
        return self.slack_bot_token is not None

    @property
    def teams_enabled(self) -> bool:
        return bool(self.microsoft_app_id) or self.teams_allow_anonymous

    def require_model(self) -> None:
        """Raise the one-line error `chat`/`serve` show when the model is not configured.

        Every missing model setting is named at once, so one run tells the whole fix.
        """
        missing = []
        if not self.model_base_url:
            missing.append(
                (
                    "AZURE_OPENAI_ENDPOINT",
                    "AZURE_OPENAI_ENDPOINT to https://<resource>.openai.azure.com "
                    "(or OPENAI_BASE_URL to any OpenAI-compatible /v1/ URL)",
                )
            )
        if not self.azure_openai_deployment:
            missing.append(
                (
                    "AZURE_OPENAI_DEPLOYMENT",
                    "AZURE_OPENAI_DEPLOYMENT to your chat model deployment's name",
                )
            )
        if len(missing) == 1:
            name, fix = missing[0]
            raise SettingsError(f"{name}: not set; set {fix.replace(name + ' ', 'it ', 1)}")
        if missing:
            names = " and ".join(name for name, _ in missing)
            raise SettingsError(f"{names}: not set; set " + ", and ".join(f for _, f in missing))

    def secrets(self) -> list[str]:
        """Every configured secret value, so logging can prove none of them is ever printed."""
        found = []
        for value in (
            self.azure_openai_api_key,
            self.slack_bot_token,
            self.slack_signing_secret,
            self.slack_app_token,
            self.microsoft_app_password,
            self.metrics_token,
        ):
            if value is not None and value.get_secret_value():
                found.append(value.get_secret_value())
        if self.redis_url is not None:
            from urllib.parse import urlsplit

            password = urlsplit(self.redis_url.get_secret_value()).password
            if password:
                found.append(password)
        return found


def _env_name(settings_cls: type[Settings], field: str) -> str:
    info = settings_cls.model_fields.get(field)
    alias = getattr(info, "validation_alias", None) if info else None
    if isinstance(alias, AliasChoices):
        return str(alias.choices[0])
    return field.upper()


_SECRET_NAMES = frozenset(
    _env_name(Settings, name)
    for name, info in Settings.model_fields.items()
    if "SecretStr" in str(info.annotation)
)


def load_settings(**overrides: object) -> Settings:
    """Build settings from the environment and `.env`, or raise `SettingsError` with one line."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = err.get("loc") or ()
        msg = str(err.get("msg", "invalid value"))
        if loc:
            name = _env_name(Settings, str(loc[0]))
            got = err.get("input")
            # BOT_ADMINS' message names the entry that is wrong: the whole value again is noise.
            names_input = name in _SECRET_NAMES or name == "BOT_ADMINS"
            shown = "" if names_input or isinstance(got, dict) else f" (got {got!r})"
            raise SettingsError(f"{name}: {msg.removeprefix('Value error, ')}{shown}") from None
        raise SettingsError(msg.removeprefix("Value error, ")) from None
