"""Each glacier its own file: ids that are not unique are refused (which outline would a
chip belong to?), ids that only collide once made safe for file names ('RGI/1', 'RGI_1',
'RGI 1') get a stable suffix, and an outline's fingerprint lets a resumed run notice that
the outline under an id has changed."""
from __future__ import annotations

import hashlib
from collections import Counter, defaultdict


def safe_name(value) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in str(value))


def check_ids(ids, parameter="ID_FIELD", column=None, layer="INVENTORY") -> None:
    """Every glacier has an id and no two share one, whatever the algorithm: an id that is
    NULL or repeated cannot join a result back to its outline."""
    where = f"{layer}'s column {column!r}" if column else layer
    missing = [k for k, i in enumerate(ids, start=1) if i is None or str(i).strip() == ""]
    if missing and len(missing) == len(ids):
        raise ValueError(f"{parameter}: {where} is empty (NULL) for every glacier: choose the column that "
                         f"holds the glacier ids, or leave {parameter} empty to number the glaciers")
    if missing:
        shown = ", ".join(map(str, missing[:10])) + (" ..." if len(missing) > 10 else "")
        raise ValueError(f"{parameter}: {len(missing)} glacier(s) have no id in {where} (features {shown}): "
                         f"fill them in, or choose another column")
    counts = Counter(str(i) for i in ids)
    dup = [i for i, n in counts.items() if n > 1]
    if dup:
        shown = ", ".join(repr(d) for d in sorted(dup)[:10]) + (" ..." if len(dup) > 10 else "")
        raise ValueError(f"{parameter}: {len(dup)} glacier id(s) occur more than once in {where} ({shown}): each "
                         f"glacier needs its own id (choose a unique field such as the RGI id, or leave "
                         f"{parameter} empty to use feature numbers)")


def file_names(ids, parameter="ID_FIELD") -> list[str]:
    """One distinct, file-system-safe name per glacier id, in order."""
    check_ids(ids, parameter)
    groups: dict[str, list[str]] = defaultdict(list)
    for i in ids:
        groups[safe_name(i)].append(str(i))
    names = []
    for i in ids:
        name = safe_name(i)
        if len(groups[name]) > 1:  # distinct ids, one file name: keep them apart, stably
            name = f"{name}-{hashlib.sha1(str(i).encode()).hexdigest()[:6]}"
        names.append(name)
    return names


def fingerprint(geometry) -> str:
    """A short hash of an outline (its WKB, rounded to the millimetre)."""
    if geometry is None or geometry.is_empty:
        return "none"
    from shapely import set_precision
    return hashlib.sha256(set_precision(geometry, 1e-8 if abs(geometry.bounds[0]) <= 360 else 1e-3).wkb).hexdigest()[:16]


def file_key(path) -> list:
    """What a cache keyed by a file must see change: its absolute path, size and modification
    time (in ns); a file replaced at the same path is another file."""
    import os
    from pathlib import Path
    st = os.stat(path)
    return [str(Path(path).resolve()), st.st_size, st.st_mtime_ns]
