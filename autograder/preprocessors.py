"""nbgrader preprocessors of our own, plugged in through nbgrader's configuration."""
from __future__ import annotations

from nbclient.exceptions import DeadKernelError
from nbformat import NotebookNode
from nbgrader.preprocessors import Execute

from . import notebooks

KERNEL_DIED = "DeadKernelError"


class ExecuteKeepingProvenPoints(Execute):
    """nbgrader's Execute, except that a kernel that dies does not zero the whole notebook.

    nbgrader stops at a dead kernel and records nothing. Here the tests that ran before the death keep
    their result, and every test that did not finish gets an error output (no points) that says why.
    """

    def preprocess(self, nb: NotebookNode, resources=None, km=None):
        self._finished: set[int] = set()
        try:
            return super().preprocess(nb, resources, km)
        except DeadKernelError:
            for index, cell in enumerate(nb.cells):
                if notebooks.is_autograded_test(cell) and index not in self._finished:
                    cell.outputs = [NotebookNode(
                        output_type="error", ename=KERNEL_DIED, evalue="the kernel died before this test finished",
                        traceback=[f"{KERNEL_DIED}: the kernel died before this test finished"])]
            return nb, resources

    def on_cell_executed(self, **kwargs):
        self._finished.add(kwargs["cell_index"])
        super().on_cell_executed(**kwargs)
