"""Readable class names for data sets whose classes are IDs (ImageNet's folders are WordNet IDs such as
n01440764): read from the name files ImageNet ships, which `pyalexnet prepare` copies into its store."""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Sequence

# ImageNet's files of readable class names, looked for in the data folder and the folders above it (Kaggle's
# LOC_synset_mapping.txt sits three levels above ILSVRC/Data/CLS-LOC).
CLASS_NAME_FILES = ("synset_words.txt", "LOC_synset_mapping.txt", "words.txt")
LEVELS_UP = 3


def find_upwards(folder, names: Sequence[str], levels: int = LEVELS_UP) -> Path | None:
    """The first file named one of `names` in `folder` or in up to `levels` folders above it, nearest first."""
    folder = Path(folder).resolve()
    for d in [folder, *folder.parents][:levels + 1]:
        for name in names:
            if (d / name).is_file():
                return d / name
    return None


def read_class_names(path, classes: Sequence[str]) -> list[str]:
    """Readable names for `classes` from a file of lines "ID name[, other names]" (ImageNet's
    synset_words.txt, LOC_synset_mapping.txt or words.txt): a class whose ID is there takes the first
    name, the others keep their own. Where two classes would read the same (ImageNet has two "crane"s, a
    bird and a machine, and two "maillot"s), each takes its first name no other class has, or else its
    first name with its ID: "crane (n02012849)"."""
    synonyms = {}
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            parts = line.split(None, 1)  # the ID, then the names, after a space or a tab
            if len(parts) == 2:
                words = [w.strip() for w in parts[1].split(",") if w.strip()]
                if words:
                    synonyms.setdefault(parts[0], words)
    names = [synonyms.get(str(c), [str(c)])[0] for c in classes]
    shared = {n for n, count in Counter(names).items() if count > 1}
    if not shared:
        return names
    taken = set(names)
    for i, c in enumerate(classes):
        if names[i] in shared:
            other = next((w for w in synonyms.get(str(c), [])[1:] if w not in taken), None)
            names[i] = other if other is not None else f"{names[i]} ({c})"
            taken.add(names[i])
    return names


def find_class_names(folder, classes: Sequence[str]) -> list[str] | None:
    """read_class_names from the first of CLASS_NAME_FILES in `folder` or above it (find_upwards), or None."""
    path = find_upwards(folder, CLASS_NAME_FILES)
    return read_class_names(path, classes) if path is not None else None


def check_names_file(path):
    """`path`, or FileNotFoundError when it is not a file (callers check early, before long work)."""
    if str(path) == "":  # Path('') is the current folder: was "class names file  is a folder"
        raise ValueError("--class-names needs a file name, such as synset_words.txt")
    if Path(path).is_dir():  # was "does not exist" of a folder that plainly does
        raise FileNotFoundError(f"class names file {path} is a folder: give the names file itself, such as "
                                f"{Path(path) / 'synset_words.txt'}")
    if Path(path).exists() and not Path(path).is_file():  # /dev/null, a FIFO: was "does not exist"
        raise FileNotFoundError(f"class names file {path} is not a regular file: give the names file itself")
    if not Path(path).is_file():
        raise FileNotFoundError(f"class names file {path} does not exist")
    return path


def class_names_for(classes: Sequence[str], *, names_file=None, data=None) -> list[str]:
    """What to call `classes`: read from `names_file` when given (a missing one is FileNotFoundError), else
    from a name file in the data folder or store `data` (a path) when it has one, else the classes as they are."""
    if names_file:
        names = read_class_names(check_names_file(names_file), classes)
        if classes and names == [str(c) for c in classes]:  # asked for by the user: said, not ignored
            from .. import _backend as B

            B.warn_user(f"class names file {names_file} names none of the classes ({', '.join(map(str, classes[:3]))}"
                        f"{', ...' if len(classes) > 3 else ''}; lines are 'ID name'): the classes keep their own "
                        "names")
        return names
    if data and Path(str(data)).is_dir():
        return find_class_names(data, classes) or [str(c) for c in classes]
    return [str(c) for c in classes]
