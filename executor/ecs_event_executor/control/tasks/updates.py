"""A builder for one conditional UpdateItem: placeholders are allocated as clauses are added, so every name and
value it sends is one its expressions use (DynamoDB refuses unused ones)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ecs_event_executor.control.tasks.item import serialize
from ecs_event_executor.control.tasks.lifecycle import TaskState
from ecs_event_executor.control.tasks.schema import Attr


class Update:
    """Collect SET and REMOVE clauses and the condition of one UpdateItem, then render its arguments."""

    def __init__(self) -> None:
        self._names: dict[str, str] = {}
        self._values: dict[str, Any] = {}
        self._sets: list[str] = []
        self._removes: list[str] = []
        self._conditions: list[str] = []

    # ------------------------------------------------------------- placeholders

    def name(self, attr: str) -> str:
        """Return the placeholder of an attribute (or map key) name, the same one for each use."""
        for placeholder, known in self._names.items():
            if known == attr:
                return placeholder
        placeholder = f"#n{len(self._names)}"
        self._names[placeholder] = attr
        return placeholder

    def value(self, value: Any) -> str:
        """Return a new placeholder for ``value``."""
        placeholder = f":v{len(self._values)}"
        self._values[placeholder] = value
        return placeholder

    # ----------------------------------------------------------------- clauses

    def set(self, attr: str, value: Any) -> Update:
        """Set ``attr`` to ``value``."""
        self._sets.append(f"{self.name(attr)} = {self.value(value)}")
        return self

    def set_if_absent(self, attr: str, value: Any) -> Update:
        """Set ``attr`` to ``value`` unless it holds one already."""
        n = self.name(attr)
        self._sets.append(f"{n} = if_not_exists({n}, {self.value(value)})")
        return self

    def increment(self, attr: str) -> Update:
        """Add one to the number ``attr`` (zero if absent)."""
        n = self.name(attr)
        self._sets.append(f"{n} = if_not_exists({n}, {self.value(0)}) + {self.value(1)}")
        return self

    def set_in_map_if_absent(self, attr: str, key: str, value: Any) -> Update:
        """Set ``attr.key`` to ``value`` unless it holds one already (the map ``attr`` must exist)."""
        path = f"{self.name(attr)}.{self.name(key)}"
        self._sets.append(f"{path} = if_not_exists({path}, {self.value(value)})")
        return self

    def remove(self, *attrs: str) -> Update:
        """Remove attributes (absent ones are no error)."""
        self._removes.extend(self.name(a) for a in attrs)
        return self

    def remove_from_map(self, attr: str, keys: Iterable[str]) -> Update:
        """Remove ``keys`` from the map ``attr`` (absent keys are no error)."""
        self._removes.extend(f"{self.name(attr)}.{self.name(k)}" for k in keys)
        return self

    # -------------------------------------------------------------- conditions

    def require(self, *conditions: str) -> Update:
        """Add conditions the item must meet, all of them, for the write to happen."""
        self._conditions.extend(conditions)
        return self

    def equals(self, attr: str, value: Any) -> str:
        return f"{self.name(attr)} = {self.value(value)}"

    def below(self, attr: str, value: Any) -> str:
        return f"{self.name(attr)} < {self.value(value)}"

    def exists(self, attr: str) -> str:
        return f"attribute_exists({self.name(attr)})"

    def absent(self, attr: str) -> str:
        return f"attribute_not_exists({self.name(attr)})"

    def state_in(self, states: Iterable[TaskState]) -> str:
        """Return "the item's state is one of ``states``" (in the lifecycle's order, so expressions are stable)."""
        chosen = sorted(set(states), key=list(TaskState).index)
        if not chosen:
            raise ValueError("a write must accept at least one state")
        return f"{self.name(Attr.STATE)} IN ({', '.join(self.value(s.value) for s in chosen)})"

    @staticmethod
    def either(*conditions: str) -> str:
        return "(" + " OR ".join(conditions) + ")"

    # --------------------------------------------------------------- rendering

    def arguments(self) -> dict[str, Any]:
        """Return the UpdateItem arguments for the clauses and conditions added so far."""
        expression = "SET " + ", ".join(self._sets)
        if self._removes:
            expression += " REMOVE " + ", ".join(self._removes)
        return {
            "UpdateExpression": expression,
            "ConditionExpression": " AND ".join(self._conditions),
            "ExpressionAttributeNames": dict(self._names),
            "ExpressionAttributeValues": serialize(self._values),
        }
