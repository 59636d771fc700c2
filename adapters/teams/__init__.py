"""Microsoft Teams adapter, built on the Microsoft 365 Agents SDK.

`TeamsAdapter` mounts `POST /api/messages`, authenticates Bot Framework requests, maps Teams
activities to `IncomingMessage` and posts replies (streamed in 1:1 chats) through the connector.
"""

from adapters.teams.adapter import TeamsAdapter
from adapters.teams.auth import CredentialsError, verify_credentials

__all__ = ["CredentialsError", "TeamsAdapter", "verify_credentials"]
