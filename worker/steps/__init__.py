"""The box's deploy steps: the protocol every step runs under, and the bodies, by noun."""
