"""Import the modules that register built-in methods and task kinds (none import torch).

One line per module: adding a method or task kind is one `register(...)` in its own module
plus one import here.
"""

_LOADED = False


def load_builtins() -> None:
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    import scalelab.data.classification  # noqa: F401  (task kind "classification")
    import scalelab.data.tasks  # noqa: F401  (task kind "lm")
    import scalelab.methods  # noqa: F401  ("pretrain")
    import scalelab.methods.finetune  # noqa: F401  ("full", "lora")
