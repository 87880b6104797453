"""`scalelab serve`: an OpenAI-compatible server over any local backend.

`scalelab.serve.server` (FastAPI + uvicorn, imported only when serving) holds the app, the
request batcher and `run_server`; this package itself imports nothing heavy.
"""
