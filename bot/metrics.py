"""Prometheus metrics, one registry per service instance (so tests can run several side by side)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120)


class Metrics:
    """Every counter the service exports; adapters and core receive this object, never a global."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.events = Counter(
            "threadwise_events_received",
            "Platform events received",
            ["platform", "kind"],
            registry=r,
        )
        self.replies = Counter(
            "threadwise_replies_sent", "Replies posted", ["platform"], registry=r
        )
        self.commands = Counter(
            "threadwise_commands_run", "Commands run", ["command", "allowed"], registry=r
        )
        self.errors = Counter("threadwise_errors", "Errors by kind", ["kind"], registry=r)
        self.model_latency = Histogram(
            "threadwise_model_latency_seconds",
            "Model call duration",
            registry=r,
            buckets=_LATENCY_BUCKETS,
        )
        self.first_token = Histogram(
            "threadwise_model_time_to_first_token_seconds",
            "Time to first streamed token",
            registry=r,
            buckets=_LATENCY_BUCKETS,
        )
        self.tokens = Counter(
            "threadwise_model_tokens", "Tokens reported by the model", ["kind"], registry=r
        )
        self.trimmed = Counter(
            "threadwise_history_messages_trimmed",
            "History messages left out of a prompt",
            registry=r,
        )
        self.lock_wait = Histogram(
            "threadwise_lock_wait_seconds",
            "Time waiting for a conversation's lock",
            registry=r,
            buckets=(0.001, 0.01, 0.05, 0.1, 0.5, 1, 5, 30, 120),
        )
        self.duplicates = Counter(
            "threadwise_duplicates_dropped",
            "Deliveries dropped as duplicates",
            ["platform"],
            registry=r,
        )

        self.busy = Counter(
            "threadwise_busy_refused",
            "Messages answered 'busy' because their conversation's queue was full",
            ["platform"],
            registry=r,
        )
        self.summaries = Counter(
            "threadwise_summary_folds",
            "Running-summary folds (HISTORY_SUMMARY) by outcome: folded, failed, discarded",
            ["outcome"],
            registry=r,
        )
        self.model_in_flight = Gauge(
            "threadwise_model_calls_in_flight",
            "Model calls running in this process (at most MODEL_MAX_CONCURRENCY)",
            registry=r,
        )
        # --- feedback (bot/feedback.py)
        self.votes = Counter(
            "threadwise_feedback_votes",
            "Feedback votes recorded",
            ["platform", "value"],
            registry=r,
        )
        self.votes_changed = Counter(
            "threadwise_feedback_votes_changed",
            "Votes that replaced a person's earlier, different vote on the same answer",
            ["platform"],
            registry=r,
        )

        self.model_retries = Counter(
            "threadwise_model_retries",
            "Model calls retried, by the kind of failure (bot/model_errors.py)",
            ["kind"],
            registry=r,
        )

        self.model_call_limit = Gauge(
            "threadwise_model_call_limit",
            "Model calls the pacer lets run at once now (shrinks on 429, grows back)",
            registry=r,
        )
        self.model_calls_waiting = Gauge(
            "threadwise_model_calls_waiting",
            "Turns waiting for the pacer to let their model call start",
            registry=r,
        )

    def model_retry(self, kind: str) -> None:
        self.model_retries.labels(kind).inc()

    def watch_pacer(self, pacer) -> None:
        """Read the model-call pacer's state (bot/pacing.py) at each scrape."""
        self.model_in_flight.set_function(lambda: pacer.in_flight)
        self.model_call_limit.set_function(lambda: pacer.limit)
        self.model_calls_waiting.set_function(lambda: pacer.waiting)

    def render(self) -> bytes:
        return generate_latest(self.registry)
