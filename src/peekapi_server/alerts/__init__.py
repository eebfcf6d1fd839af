"""Alerts: rules over a project's traffic, evaluated every minute inside the collector, and their notifications.

``rules`` says what a rule and a channel are; the store keeps them (``store.alerts``); the evaluator decides each
rule's state from the rollups and queues notifications in the store's outbox; the outbox is delivered to webhooks,
Slack, Discord and email from there.
"""
