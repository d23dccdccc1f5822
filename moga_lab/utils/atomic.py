"""Atomic file writes: a reader (or a resumed run) never sees half a file."""
import os
import tempfile

import pandas as pd

__all__ = ['atomic_write_text', 'atomic_write_csv']


def atomic_write_text(path: str, text: str) -> None:
    """Write to a temporary file in the same folder, then rename: a reader never sees half a file."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix='.tmp-', suffix=os.path.basename(path))
    try:
        with os.fdopen(fd, 'w') as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_csv(path: str, frame: pd.DataFrame) -> None:
    """A DataFrame as CSV (no index), written atomically."""
    atomic_write_text(path, frame.to_csv(index=False))
