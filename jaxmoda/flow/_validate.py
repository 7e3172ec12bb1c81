"""One-line validation of string choices, shared by the flow modules."""

from typing import Sequence


def check_choice(what: str, value: str, choices: Sequence[str], hint: str = "") -> str:
    """Returns `value` if it is one of `choices`, else raises a one-line ValueError.

    Args:
      what: name of the setting, used in the message (e.g. "rectified_flow sampler").
      value: the requested choice.
      choices: the valid choices.
      hint: optional extra text appended to the message.

    Returns:
      `value`, unchanged.
    """
    if value not in choices:
        msg = f"Unknown {what} {value!r}; valid choices: {', '.join(repr(c) for c in choices)}."
        raise ValueError(f"{msg} {hint}".strip())
    return value
