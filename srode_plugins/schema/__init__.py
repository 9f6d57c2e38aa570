"""The typed option schema: one strict description of the core sections, refined per component.

`validate(opts, is_train=...)` is the engine's entry point; `reference(...)` and `markdown()` print it.
Plugins refine it with an `option_schema` class attribute on their components (docs/plugin-contract.md).
"""

from srode_plugins.schema.spec import Key, Section
from srode_plugins.schema.validate import validate

__all__ = ["Key", "Section", "validate"]
