"""The generation worker and the chat adapters (console, Discord, Slack)."""
