"""The one training loop every method runs on (engine.loop.train), and what it needs."""
