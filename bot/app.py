"""Wiring: builds the core's objects from settings and hands each what it needs."""

from __future__ import annotations

from dataclasses import dataclass

from bot.commands import Commands
from bot.llm import LLMClient, make_llm
from bot.metrics import Metrics
from bot.prompts import Prompts
from bot.quota import quotas_from
from bot.responder import Responder
from bot.settings import Settings
from bot.store import Store, make_store
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

    async def close(self) -> None:
        if self.llm is not None:
            await self.llm.close()
        await self.store.close()


def build_service(settings: Settings, *, with_model: bool = True) -> Service:
    """`with_model=False` for shell commands that never call the model (`threadwise prompt`)."""
    store = make_store(settings)
    counter = TokenCounter(
        encoding_name_for(settings.azure_openai_model, settings.azure_openai_deployment)
    )
    llm = make_llm(settings) if with_model else None
    metrics = Metrics()
    prompts = Prompts(store, counter, settings.system_prompt, settings.prompt_max_tokens)
    commands = Commands(store, prompts, settings.admins, quotas=quotas_from(settings))
    responder = Responder(
        store=store,
        llm=llm,
        counter=counter,
        prompts=prompts,
        commands=commands,
        metrics=metrics,
        token_limit=settings.token_limit,
        max_response_tokens=settings.max_response_tokens,
        model_max_concurrency=settings.model_max_concurrency,
        conversation_queue_max=settings.conversation_queue_max,
        quotas=quotas_from(settings),
        redact=settings.redact_pii,
    )
    return Service(settings, store, counter, llm, prompts, commands, responder, metrics)
