"""`ponder serve`: an OpenAI-compatible reasoning server (docs/serve.md).

protocol.py  the request/response models and `ChatRequest.to_params()`
engine.py    the bounded worker pool and queue, cancellation, thread -> event loop bridge
app.py       routes and streaming
errors.py    every error in OpenAI's shape; 400 (never 422) for bad input
commands.py  the `serve` command (also `python -m ponder.serve`)

Importing this package imports nothing heavy, so `ponder --help` stays fast; the app is
`ponder.serve.app.create_app(models, problem_for, ...)`.
"""
