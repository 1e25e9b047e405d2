"""User-facing errors: one line that says what was wrong and what to do."""


class WorkbenchError(Exception):
    """An error caused by the caller's input or environment, not by a bug.

    The CLI prints its message as one line and exits with status 2; notebooks show it
    without a long traceback being needed to understand it.
    """


class SignalUnavailable(WorkbenchError):
    """A requested signal cannot be computed for this model (the message says why)."""


class MemoryEstimateExceeded(WorkbenchError):
    """The work would need more memory than is available; nothing was allocated."""


class NonFiniteWarning(UserWarning):
    """A run's values are NaN or infinite: its `meta["non_finite"]` says where and why
    (`workbench.finite`)."""


class IncompleteAttributionWarning(UserWarning):
    """Integrated gradients' attributions of some targets miss completeness (their sum differs
    from f(x) - f(baseline) by more than the tolerance): the path integral was not resolved;
    the run's `meta["attribution"]["incomplete"]` says which targets and by how much."""


def check_positive_int(value, name: str) -> None:
    """Refuse `value` (the argument `name`) unless it is an integer of at least 1."""
    if not isinstance(value, int) or value < 1:
        raise WorkbenchError(f"{name} must be a positive integer, got {value!r}")
