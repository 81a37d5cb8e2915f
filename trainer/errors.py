"""Trainer errors. Each message is written for the person who caused it and says what to do next.

They subclass storage's DreambotError, so the bot and the CLI show them without a traceback.
`InputError`s are the job's own fault and are never retried; anything else may be.
"""

from __future__ import annotations

from storage.errors import DreambotError


class TrainerError(DreambotError):
    """Training or generation could not go on; retrying may help."""


class CannotStart(TrainerError):
    """The worker refuses to run with this configuration (a safety checker or watermark it can't load);
    restarting it won't help until the setting or the installation changes."""


class InputError(TrainerError):
    """The job asked for something that cannot work; retrying the same job would fail the same way."""


class ModelNotFound(InputError):
    """The base model named in the settings or the job cannot be loaded offline."""


class PromptTooLong(InputError):
    def __init__(self, tokens: int, limit: int):
        super().__init__(f"Your prompt is {tokens} tokens long and the model reads at most {limit}; "
                         "nothing was cut. Shorten it (fewer or shorter words) and try again.")
        self.tokens, self.limit = tokens, limit


class OutOfMemory(TrainerError):
    """CUDA ran out of memory even with gradient checkpointing and 8-bit AdamW."""
