"""An OpenAI-compatible HTTP server with dynamic batching (``hybridformer serve``).

The pieces, as in vLLM: a bounded :class:`~.queue.RequestQueue` (admission, 429 when full), a batching
policy (:class:`~.policy.BatchPolicy` for one-shot encoders, :class:`~.scheduler.ContinuousBatcher`
for generation) and the model execution (:mod:`.engine`: :class:`~.engine.EncoderEngine` and the
:class:`~.engine.Generator` interface), run in a worker thread so the event loop never blocks.
:func:`~.app.create_app` puts them behind FastAPI.
"""

from hybridformer.serve.config import ServeConfig

__all__ = ["ServeConfig"]
