"""The longest duration a setting or command-line option may name, in seconds."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator

# A day: above it a value is a typo (a lease, a wait, a bake no one would mean), and every
# duration stays a float that Redis (PX milliseconds), sleeps and socket timeouts take.
MAX_SECONDS = 86_400
MAX_SAID = f"at most {MAX_SECONDS} seconds (24h)"


def at_most_a_day(seconds: float) -> float:
    if seconds > MAX_SECONDS:
        raise ValueError(f"{seconds:g} seconds is too long: a duration is {MAX_SAID}")
    return seconds


# A setting's seconds: finite (the settings refuse inf and nan) and at most a day.
Seconds = Annotated[float, AfterValidator(at_most_a_day)]
