"""Wiring: builds the core's objects from settings and hands each what it needs."""

from __future__ import annotations

from dataclasses import dataclass

from bot.attachments import Files, images_supported
from bot.commands import Commands
from bot.feedback import Feedback
from bot.llm import LLMClient, make_llm
from bot.metrics import Metrics
from bot.prompts import Prompts
from bot.quota import quotas_from
from bot.responder import Responder
from bot.settings import Settings
from bot.store import Store, make_store
from bot.suggestions import SuggestedPrompts, parse_json
from bot.summary import Summarizer
from bot.token_ratio import TokenRatio
from bot.tokens import TokenCounter, encoding_name_for


@dataclass
class Service:
    settings: Settings
    store: Store
    counter: TokenCounter
    llm: LLMClient | None
    prompts: Prompts
    commands: Commands
    responder: Responder
    metrics: Metrics
    summarizer: Summarizer | None = None
    feedback: Feedback | None = None  # None: FEEDBACK=false
    suggestions: SuggestedPrompts | None = None

    async def close(self) -> None:
        if self.summarizer is not None:
            await self.summarizer.close()
        if self.llm is not None:
            await self.llm.close()
        await self.store.close()


def build_service(settings: Settings, *, with_model: bool = True) -> Service:
    """`with_model=False` for shell commands that never call the model (`threadwise prompt`)."""
    store = make_store(settings)
    counter = TokenCounter(
        encoding_name_for(settings.azure_openai_model, settings.azure_openai_deployment)
    )
    metrics = Metrics()
    llm = (
        make_llm(settings, count=counter.count, on_retry=metrics.model_retry)
        if with_model
        else None
    )
    if llm is not None:
        metrics.watch_pacer(llm.pacer)
    prompts = Prompts(store, counter, settings.system_prompt, settings.prompt_max_tokens)
    commands = Commands(store, prompts, settings.admins, quotas=quotas_from(settings))
    summarizer = None
    if settings.history_summary and llm is not None:
        summarizer = Summarizer(
            store=store,
            llm=llm,
            counter=counter,
            metrics=metrics,
            max_tokens=settings.summary_max_tokens,
            token_limit=settings.token_limit,
        )
    files = Files(
        counter,
        store,
        max_bytes=settings.files_max_bytes,
        images_enabled=images_supported(
            settings.model_supports_images,
            settings.azure_openai_model,
            settings.azure_openai_deployment,
        ),
        history_ttl=settings.history_ttl_seconds,
    )
    responder = Responder(
        store=store,
        llm=llm,
        counter=counter,
        prompts=prompts,
        commands=commands,
        metrics=metrics,
        token_limit=settings.token_limit,
        max_response_tokens=settings.max_response_tokens,
        token_ratio=TokenRatio(settings.token_safety_margin),
        conversation_queue_max=settings.conversation_queue_max,
        summarizer=summarizer,
        files=files,
        quotas=quotas_from(settings),
        redact=settings.redact_pii,
    )
    feedback = Feedback(
        store=store,
        prompts=prompts,
        metrics=metrics,
        deployment=settings.azure_openai_deployment or "",
    )
    suggested = SuggestedPrompts(store, parse_json(settings.slack_suggested_prompts))
    return Service(
        settings,
        store,
        counter,
        llm,
        prompts,
        commands,
        responder,
        metrics,
        feedback=feedback if settings.feedback else None,
        suggestions=suggested,
        summarizer=summarizer,
    )
