"""User-facing errors: the CLI prints their message as one line and exits with code 2."""


class EgoDGLError(Exception):
    """A problem with the user's input or setup; the message says what and how to fix it."""


class DataError(EgoDGLError):
    """Bad or missing dataset files."""


class ConfigError(EgoDGLError):
    """Unknown, invalid or incompatible options."""


class EgoDGLWarning(UserWarning):
    """Something was fixed up on the way (e.g. duplicate interactions dropped); the CLI
    shows it as one yellow line."""


class TrainingError(EgoDGLError):
    """Training cannot go on, e.g. the loss is no longer a finite number."""


def non_finite_loss(loss: float, epoch: int, batch: int, batches: int, lr: float) -> TrainingError:
    """The error that stops a run whose loss became NaN or infinite (nothing of the bad
    epoch is saved, so last.pt still holds the previous one)."""
    kept = f"last.pt keeps epoch {epoch - 1}" if epoch > 1 else "no checkpoint was saved"
    return TrainingError(
        f"the loss became {loss} at epoch {epoch}, batch {batch} of {batches}; stopped without results ({kept}); "
        f"try a lower --lr (this run: {lr:g}) or check the item features for huge values"
    )
