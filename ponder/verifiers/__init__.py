"""Answer extraction, voting keys, equivalence checks and TRL-shaped reward functions."""

from ponder.verifiers.answers import (
    REL_TOL,
    boxed_contents,
    canonical,
    extract_answer,
    is_equivalent,
    last_boxed,
    last_number,
    numbers_equal,
    to_number,
)

__all__ = [
    "REL_TOL",
    "boxed_contents",
    "canonical",
    "extract_answer",
    "is_equivalent",
    "last_boxed",
    "last_number",
    "numbers_equal",
    "to_number",
]
