"""Import the modules that register built-in methods, task kinds and pretrained models.

None of them imports torch.

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
    import scalelab.data.math_data  # noqa: F401  (task kind "math")
    import scalelab.data.mcqa  # noqa: F401  (task kind "mcqa")
    import scalelab.data.tasks  # noqa: F401  (task kind "lm")
    import scalelab.methods  # noqa: F401  ("pretrain")
    import scalelab.methods.active  # noqa: F401  ("active")
    import scalelab.methods.cooldown  # noqa: F401  ("cooldown")
    import scalelab.methods.distill  # noqa: F401  ("distill")
    import scalelab.methods.evaluate  # noqa: F401  ("evaluate")
    import scalelab.methods.evaluate_classification  # noqa: F401  (its classification variant)
    import scalelab.methods.finetune  # noqa: F401  ("full", "lora")
    import scalelab.methods.rationale_distill  # noqa: F401  ("rationale_distill")
    import scalelab.methods.rationales  # noqa: F401  ("rationales")
    import scalelab.methods.w2s  # noqa: F401  ("w2s")
    import scalelab.models.backtranslate  # noqa: F401  (task.augment method "back_translation")
    import scalelab.models.pretrained  # noqa: F401  (minilm-l6, mpnet-base, smollm2-135m, ...)
