"""The reference solutions, read at run time from the instructor's source notebooks in solutions/.

Nothing in this package contains a reference solution: a student who has the package but not
solutions/ has only the visible checks. Hidden checks call `load(lesson)`.
"""
from __future__ import annotations

import functools
from types import SimpleNamespace

from . import notebooks, paths

# Every graded cell may rely on these, as the notebooks' import cell provides them.
PRELUDE = "import math\nimport numpy as np\nimport torch\nimport torch.nn.functional as F\nfrom torch import nn\n"


class ReferenceUnavailable(RuntimeError):
    pass


@functools.cache
def load(lesson: str) -> SimpleNamespace:
    """The lesson's reference functions, executed from the answer cells of its source notebook."""
    path = paths.solution_path(lesson)
    if not path.is_file():
        raise ReferenceUnavailable(
            f"the hidden checks need the instructor's solutions/{lesson}.ipynb, which is not here")
    nb = notebooks.read(path)
    namespace: dict = {"__name__": f"reference_{lesson}"}
    exec(compile(PRELUDE, "<prelude>", "exec"), namespace)
    for cell in nb.cells:
        if notebooks.is_answer(cell):
            exec(compile(cell.source, f"<{lesson}:{notebooks.grade_id(cell)}>", "exec"), namespace)
    return SimpleNamespace(**{k: v for k, v in namespace.items() if not k.startswith("__")})
