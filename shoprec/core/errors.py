"""User errors: what a stage raises when the user, not the code, has to act.

Every failure a user can fix (a missing or empty input, stages run out of
order, a bad config, a data-quality gate, a model the model gate did not
bless, an upstream output damaged after it was written) is a
:class:`UserError`. The CLI prints its message on one or two lines,
``shoprec STAGE: <message>``, and exits with its ``exit_code`` (the README's
table); any other exception is a programming error and keeps its traceback.
Each subclass also derives from the builtin it replaces, so callers that
caught ``FileNotFoundError`` or ``ValueError`` still do.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional


class UserError(Exception):
    """A failure the user fixes; the message says what, where and what to do.

    Attributes:
        exit_code: The CLI's exit status for it.
        report: The failed stage's report, when it wrote one (or None).
    """

    exit_code = 1

    def __init__(self, message: str, report: Optional[Mapping[str, Any]] = None):
        super().__init__(message)
        self.report = report


class QualityGateError(UserError, RuntimeError):
    """An input's dead letters are over the data set's threshold."""

    exit_code = 1


class ConfigError(UserError, ValueError):
    """A config file is malformed, names an unknown key or is inconsistent."""

    exit_code = 2


class InputMissingError(UserError, FileNotFoundError):
    """An input file or folder the stage reads is not there."""

    exit_code = 3


class InputEmptyError(UserError, ValueError):
    """An input, or a split, has fewer rows than ``dataset.quality.min_rows``."""

    exit_code = 4


class StageOrderError(UserError, FileNotFoundError):
    """An upstream stage has not run, or did not finish (no success marker)."""

    exit_code = 5


class InputSchemaError(UserError, ValueError):
    """An input file lacks a column the data set requires."""

    exit_code = 6


class ModelNotBlessedError(UserError, RuntimeError):
    """The model gate did not bless the newly trained model: nothing was published.

    The stage wrote its verdict report; scoring and recommending go on with
    the last blessed model.
    """

    exit_code = 7


class RunLockedError(UserError, RuntimeError):
    """Another process is running stages in the same run folder (its lock file)."""

    exit_code = 8


class InputDamagedError(UserError, ValueError):
    """A file an upstream stage published is not what its manifest lists.

    Missing, truncated, changed, added or unreadable since the stage that wrote
    it finished (``shoprec.io.manifest.check``), or a manifest or
    ``models/CURRENT`` that cannot be read.
    """

    exit_code = 9


# Any other exception is a bug: the CLI prints its traceback and exits with this
# (EX_SOFTWARE), so a scheduler tells a crash from every failure above.
CRASH_EXIT_CODE = 70


# Exit status → what it means; the CLI's --help epilog and the README list these.
EXIT_CODES = (
    (0, "the stage finished and wrote its success marker"),
    (QualityGateError.exit_code, "a data-quality gate failed (dead letters over "
                                 "dataset.quality.max_bad_fraction); report and dead "
                                 "letters are written"),
    (ConfigError.exit_code, "bad config or command line"),
    (InputMissingError.exit_code, "an input file is missing"),
    (InputEmptyError.exit_code, "an input or a split has fewer than dataset.quality.min_rows "
                                "rows"),
    (StageOrderError.exit_code, "an upstream stage has not run or failed"),
    (InputSchemaError.exit_code, "an input lacks a required column"),
    (ModelNotBlessedError.exit_code, "the model gate did not bless the new model; the last "
                                     "blessed model stays published"),
    (RunLockedError.exit_code, "another run holds the run folder's lock"),
    (InputDamagedError.exit_code, "an upstream stage's output was changed after it finished "
                                  "(missing, truncated, edited or unreadable)"),
    (CRASH_EXIT_CODE, "crashed: a bug, not a user error (traceback printed)"),
)
