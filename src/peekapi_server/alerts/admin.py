"""Managing rules and channels, the same from the dashboard and from the command line.

Each function opens one store transaction. Bad input raises ``ValueError`` with the reason (a rule naming a
channel the project does not have, a channel still named by rules); a name taken or unknown raises the store's
``StoreError``. :func:`summaries` says where each rule stands: the worst state of its groups, how many fire,
the last value seen, and the silence, for the rules list and ``peekapi alert list``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from peekapi_server.store import Store, StoreError
from peekapi_server.store.alerts import AlertState, StoredChannel, StoredRule

from .rules import Channel, Rule, new_webhook_secret

#: States from the least to the most urgent: a rule shows the most urgent of its groups'.
SEVERITY = ("inactive", "resolved", "pending", "firing")


def rank(state: str) -> int:
    """How urgent a state is (0 for one this module does not know)."""
    return SEVERITY.index(state) if state in SEVERITY else 0


@dataclass(frozen=True)
class Summary:
    """Where one rule stands (``rule`` is ``None`` when its stored spec no longer reads as a rule)."""

    stored: StoredRule
    rule: Rule | None
    problem: str | None  # why the spec does not read, if it does not
    state: str  # the most urgent of its groups' states; "inactive" before the first evaluation
    groups: int
    firing: int
    value: float | None  # the last value of the group that decides ``state`` (the newest among equals)
    evaluated_at: int | None

    def silenced(self, now: int) -> bool:
        return self.stored.silenced_until > now


def load(stored: StoredRule) -> tuple[Rule | None, str | None]:
    """The rule a stored spec describes, or ``None`` and the reason it does not read."""
    try:
        return Rule.loads(stored.spec), None
    except ValueError as exc:  # json.JSONDecodeError is a ValueError
        return None, str(exc)


def summarize(stored: StoredRule, states: Sequence[AlertState]) -> Summary:
    """The summary of one rule from its groups' states."""
    rule, problem = load(stored)
    worst = max(states, key=lambda s: (rank(s.state), s.evaluated_at), default=None)
    return Summary(
        stored=stored,
        rule=rule,
        problem=problem,
        state=worst.state if worst else "inactive",
        groups=len(states),
        firing=sum(1 for s in states if s.state == "firing"),
        value=None if worst is None or worst.value is None else float(worst.value),
        evaluated_at=max((s.evaluated_at for s in states), default=_evaluated(stored)),
    )


def _evaluated(stored: StoredRule) -> int | None:
    """The minute a rule was last evaluated at, from its mark (its groups may all be unstored: never breached);
    None before its first evaluation since it was created or last edited (an edit starts its states again)."""
    return stored.evaluated_upto if stored.evaluated_upto > stored.updated_at // 60 * 60 else None


def summaries(store: Store, project_id: int | None = None) -> list[Summary]:
    """Every rule of the project (or of all projects), by project and name, with where it stands."""
    with store.alerts(False) as a:
        return [summarize(r, list(a.states(r.id).values())) for r in a.rules(project_id)]


def _check_channels(known: Sequence[StoredChannel], rule: Rule) -> None:
    names = {c.name for c in known}
    missing = [c for c in rule.channels if c not in names]
    if missing:
        raise ValueError(f"the project has no channel named {', '.join(repr(m) for m in missing)}")


def create_rule(store: Store, project_id: int, rule: Rule, now: int) -> StoredRule:
    """Stores a new rule of the project (its channels must exist)."""
    with store.alerts(True) as a:
        _check_channels(a.channels(project_id), rule)
        return a.create_rule(project_id, rule.name, rule.dumps(), now)


def update_rule(store: Store, rule_id: int, rule: Rule, now: int) -> None:
    """Replaces a rule (its states start again); a new name must be free in the project."""
    with store.alerts(True) as a:
        stored = a.rule(rule_id)
        if stored is None:
            raise StoreError(f"no rule with id {rule_id}")
        _check_channels(a.channels(stored.project_id), rule)
        other = a.rule_named(stored.project_id, rule.name)
        if other is not None and other.id != rule_id:
            raise StoreError(f"a rule named {rule.name!r} already exists")
        a.update_rule(rule_id, rule.name, rule.dumps(), now)


def channels(store: Store, project_id: int) -> list[StoredChannel]:
    """The project's channels, by name."""
    with store.alerts(False) as a:
        return a.channels(project_id)


def shown_target(channel: StoredChannel) -> str:
    """Where a channel sends, safe to show: an email channel's addresses, a URL's scheme and host only (the path
    of a Slack or Discord webhook URL is a credential)."""
    if channel.kind == "email":
        return channel.target
    parts = urlsplit(channel.target)
    return f"{parts.scheme}://{parts.hostname or ''}/…"


def create_channel(store: Store, project_id: int, channel: Channel, now: int) -> tuple[StoredChannel, str | None]:
    """Stores a checked channel; a webhook gets a new ``whsec_`` signing secret, returned to be shown once."""
    checked = channel.checked()
    secret = new_webhook_secret() if checked.kind == "webhook" else None
    with store.alerts(True) as a:
        return a.create_channel(project_id, checked.name, checked.kind, checked.target, secret=secret, now=now), secret


def delete_channel(store: Store, project_id: int, name: str) -> None:
    """Deletes a channel no rule names (``ValueError`` naming the rules that still send to it)."""
    with store.alerts(True) as a:
        users = [r.name for r in a.rules(project_id) if name in _channels_of(r)]
        if users:
            raise ValueError(
                f"the channel {name!r} is used by the rule(s) {', '.join(map(repr, users))}: edit them first"
            )
        a.delete_channel(project_id, name)


def _channels_of(stored: StoredRule) -> tuple[str, ...]:
    rule, _ = load(stored)
    return rule.channels if rule else ()
