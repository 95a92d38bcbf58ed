"""ponder: turn any language model into a reasoning model.

The core (types, protocols, schemes, verifiers) imports no torch and no inference engine;
backends load lazily through `ponder.models.catalog.load_model`.
"""

import logging

from ponder.core.errors import PonderError
from ponder.core.problem import Problem
from ponder.core.types import Completion, GenerationRequest, Result, SamplingParams, Trace, Usage

__version__ = "0.1.0"

# A library never prints through Python's fallback handler; applications configure logging.
logging.getLogger("ponder").addHandler(logging.NullHandler())
__all__ = ["Completion", "GenerationRequest", "PonderError", "Problem", "Result",
           "SamplingParams", "Trace", "Usage", "__version__"]
