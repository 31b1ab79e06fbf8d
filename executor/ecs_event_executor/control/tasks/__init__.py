"""The task item contract: one item per launch in the tasks table, and the only code that knows its shape.

- ``lifecycle``: the states and the one transition table (no AWS imports);
- ``schema``: attribute names, keys, indexes, retention, CreateTable arguments (no AWS imports);
- ``item``: the typed view of an item, ECS snapshots, write outcomes, the bounded history;
- ``updates``: the builder of one conditional UpdateItem;
- ``reads`` and ``table``: ``TaskTable``, the reads and the named conditional writes.

Import from the module that owns a name; vocabulary-only code imports ``lifecycle`` and ``schema`` alone.
"""
