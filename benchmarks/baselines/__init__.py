"""The training loops the engine replaced, kept verbatim as benchmark baselines (only their
imports changed: `scalelab.methods.{checkpoint,devices,optim}` moved to `scalelab.engine`;
the old checkpoint functions are `checkpoint_v0`)."""
