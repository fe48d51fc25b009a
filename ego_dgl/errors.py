"""User-facing errors: the CLI prints their message as one line and exits with code 2."""

import errno


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


FS_HINTS = {
    errno.ENOSPC: "free some space and run again (nothing was left half-written)",
    errno.EDQUOT: "free some space or raise the quota and run again (nothing was left half-written)",
    errno.EROFS: "choose a folder on a writable file system",
    errno.EACCES: "choose a folder you may write to, or fix its permissions",
    errno.EPERM: "choose a folder you may write to, or fix its permissions",
    errno.EEXIST: "a file is in the way; choose another path",
    errno.ENOTDIR: "a part of the path is a file, not a folder; choose another path",
    errno.ENOENT: "check the path",
}


ALLOCATION_FAILURES = ("can't allocate memory", "out of memory")  # torch's CPU and CUDA allocators' words


def out_of_memory(err: BaseException) -> bool:
    """Whether `err` is an allocation that failed: Python's or numpy's MemoryError, or the
    RuntimeError (OutOfMemoryError on CUDA) torch's allocators raise."""
    return isinstance(err, MemoryError) or isinstance(err, RuntimeError) and any(w in str(err) for w in ALLOCATION_FAILURES)


def memory_message(err: BaseException) -> str:
    """An allocation failure as one line: what could not be allocated and what to change."""
    detail = " ".join(str(err).split())
    detail = detail[detail.find("you tried"):] if "you tried" in detail else detail
    return " ".join(f"out of memory ({detail[:160] or type(err).__name__}); use smaller options (--dim, --batch-size, "
                    "--eval-chunk, a model's widths) or a machine with more free memory".split())


def os_error_message(err: OSError) -> str:
    """An OSError as one line: the path, what went wrong, what to do."""
    where = f"{err.filename}: " if err.filename else ""
    what = err.strerror or str(err) or type(err).__name__
    hint = FS_HINTS.get(err.errno, "check the path and the file system, then run again")
    return " ".join(f"{where}{what}; {hint}".split())
